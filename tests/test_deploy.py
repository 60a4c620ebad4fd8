"""deploy/: the manifests parse, point at code and configs that exist, and agree with each other and with the
metric catalogue (cluster.metrics.METRICS). Static checks only: no cluster, no network, no image build."""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from cluster import metrics
from cluster.config import load_config
from cluster.metrics import exported_names, is_catalogued, prometheus_name

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
MANIFESTS = [DEPLOY / "kuberay" / "rayjob.yaml", DEPLOY / "kuberay" / "raycluster.yaml"]
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")   # Kubernetes IANA_SVC_NAME, at most 15 characters


def docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def container(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]


def port_names(c: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def rayjob() -> dict:
    (doc,) = docs(DEPLOY / "kuberay" / "rayjob.yaml")
    return doc


def pyproject_names() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + list(meta["optional-dependencies"]["gpu"])
    return {normalize(re.match(r"[A-Za-z0-9_.\-]+", r).group(0)) for r in reqs}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---- every file parses -----------------------------------------------------------------------------------------
def test_every_yaml_under_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(files) >= 4, files
    for f in files:
        assert docs(f), f"{f} has no YAML document"


def test_kuberay_manifests_have_the_expected_shape():
    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == "/app"          # the image's WORKDIR (deploy/Dockerfile)
    (cl,) = docs(DEPLOY / "kuberay" / "raycluster.yaml")
    assert cl["apiVersion"] == "ray.io/v1" and cl["kind"] == "RayCluster"
    for doc in (job, cl):
        spec = cluster_spec(doc)
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
        assert head["rayStartParams"]["metrics-export-port"] == "8080"
        assert "nvidia.com/gpu" not in container(head)["resources"].get("limits", {})
        (gpu,) = spec["workerGroupSpecs"]
        assert gpu["replicas"] >= 1
        res = container(gpu)["resources"]
        assert int(res["limits"]["nvidia.com/gpu"]) == 8 == int(res["requests"]["nvidia.com/gpu"])
        for group in [head, gpu]:
            assert container(group)["image"] == container(head)["image"]
            for name in port_names(container(group)):
                assert len(name) <= 15 and PORT_NAME.match(name), f"invalid container port name {name!r}"


# ---- the RayJob entrypoint runs something that exists, with a config that validates ------------------------------
def test_rayjob_entrypoint_module_and_config():
    argv = shlex.split(rayjob()["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"], argv
    module = argv[2]
    assert importlib.util.find_spec(module) is not None, f"entrypoint module {module} is not importable"
    config, overrides, rest = None, [], argv[3:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--config":
            config = value
        elif flag == "--set":
            overrides.append(value)
        else:
            pytest.fail(f"unexpected entrypoint argument {flag}")
    assert config is not None, "the entrypoint names no --config"
    path = ROOT / config                                    # relative to working_dir = the repository root
    assert path.is_file(), f"the RayJob's config {config} does not exist"
    cfg = load_config(path, overrides)
    assert cfg.cluster.host == "0.0.0.0"                     # reachable by Prometheus inside the pod network
    assert_data_ships_with_the_image(cfg, yaml.safe_load(rayjob()["spec"]["runtimeEnvYAML"]))
    head = container(rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"])
    assert port_names(head)["wp-metrics"] == cfg.cluster.metrics_port


def assert_data_ships_with_the_image(cfg, runtime_env: dict) -> None:
    """The job's data needs no volume: synthetic, or the real networks the image holds (data/reasonmap/ in the
    repository, copied by the Dockerfile, found without $WAYPOINT_REASONMAP_DIR)."""
    assert "WAYPOINT_REASONMAP_DIR" not in runtime_env.get("env_vars", {}), "no volume provides that path"
    if cfg.data.source == "synthetic":
        return
    assert cfg.data.source == "real", f"data.source {cfg.data.source} needs files the manifest does not mount"
    from data import real
    assert real.PACKAGED_ROOT.is_relative_to(ROOT / "data") and (real.PACKAGED_ROOT / "stations").is_dir()
    assert re.search(r"^COPY data \./data$", dockerfile(), re.M), "the image must copy data/ (the real networks)"
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(p.startswith("reasonmap/stations") for p in package_data["data"]), "pip install . must ship them"


def test_the_rayjob_data_check_rejects_a_mounted_path_and_files_from_disk():
    job_cfg = load_config(ROOT / "configs" / "gpu_qwen25vl_7b_1node.yaml", ["cluster.host=0.0.0.0"])
    with pytest.raises(AssertionError, match="no volume"):
        assert_data_ships_with_the_image(job_cfg, {"env_vars": {"WAYPOINT_REASONMAP_DIR": "/mnt/reasonmap"}})
    parquet = job_cfg.model_copy(update={"data": job_cfg.data.model_copy(update={"source": "parquet"})})
    with pytest.raises(AssertionError, match="parquet needs files"):
        assert_data_ships_with_the_image(parquet, {})


# ---- Prometheus: the ports scraped are the ports declared -------------------------------------------------------
def test_podmonitor_ports_exist_on_the_selected_containers():
    monitors = docs(DEPLOY / "prometheus" / "podmonitor.yaml")
    assert {m["kind"] for m in monitors} == {"PodMonitor"}
    assert {m["apiVersion"] for m in monitors} == {"monitoring.coreos.com/v1"}
    by_type = {m["spec"]["selector"]["matchLabels"]["ray.io/node-type"]: m for m in monitors}
    assert set(by_type) == {"head", "worker"}
    assert {e["port"] for e in by_type["head"]["spec"]["podMetricsEndpoints"]} == {"metrics", "wp-metrics"}
    for manifest in MANIFESTS:
        (doc,) = docs(manifest)
        spec = cluster_spec(doc)
        groups = {"head": [spec["headGroupSpec"]], "worker": spec["workerGroupSpecs"]}
        for node_type, monitor in by_type.items():
            for group in groups[node_type]:
                names = port_names(container(group))
                for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                    assert endpoint["port"] in names, f"{manifest.name}: {node_type} lacks port {endpoint['port']}"
        head = port_names(container(spec["headGroupSpec"]))
        assert head["metrics"] == int(spec["headGroupSpec"]["rayStartParams"]["metrics-export-port"])


def test_plain_scrape_config_keeps_the_declared_port_names():
    (conf,) = docs(DEPLOY / "prometheus" / "scrape.yaml")
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert set(jobs) == {"waypoint", "ray"}
    kept = {name: {r["regex"] for r in j["relabel_configs"]
                   if r.get("action") == "keep" and r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]}
            for name, j in jobs.items()}
    assert kept == {"waypoint": {"wp-metrics"}, "ray": {"metrics"}}


# ---- Grafana: every waypoint_* series a panel queries is one the controller exports -----------------------------
def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "waypoint.json").read_text())
    assert dash["schemaVersion"] >= 36
    assert any(v["name"] == "DS_PROMETHEUS" and v["type"] == "datasource" for v in dash["templating"]["list"])
    exprs = []
    for panel in dash["panels"]:
        for sub in [panel] + panel.get("panels", []):
            for target in sub.get("targets", []):
                assert sub["datasource"]["uid"] == "${DS_PROMETHEUS}"
                exprs.append(target["expr"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["definition"])
    return exprs


def test_dashboard_queries_only_exported_waypoint_metrics():
    exprs = dashboard_exprs()
    used = {name for e in exprs for name in re.findall(r"\bwaypoint_[A-Za-z0-9_]+", e)}
    assert len(used) > 30
    assert used <= exported_names(), sorted(used - exported_names())
    for key in ("reward/total", "throughput/tokens_per_s", "time/generate_s", "time/learn_s", "time/weight_sync_s",
                "time/step_s", "weight_sync/bytes", "buffer/size", "feeder/dropped", "staleness/mean",
                "loss/clip_fraction", "loss/approx_kl", "grad_norm"):
        assert prometheus_name(key) in used, key
    ray_series = {name for e in exprs for name in re.findall(r"\bray_[a-z_]+", e)}
    assert ray_series <= {"ray_node_gpus_utilization", "ray_node_cpu_utilization", "ray_node_gram_used"}


# Exported metrics deliberately left off the dashboard, each with the reason (empty today: every one has a panel).
NO_PANEL: dict[str, str] = {}


def test_every_exported_metric_has_a_panel_or_a_stated_reason():
    used = {name for e in dashboard_exprs() for name in re.findall(r"\bwaypoint_[A-Za-z0-9_]+", e)}
    missing = sorted(exported_names() - used - set(NO_PANEL))
    assert not missing, f"catalogued in cluster.metrics.METRICS but on no dashboard panel, with no reason: {missing}"
    for name, reason in NO_PANEL.items():
        assert name in exported_names() and name not in used and reason.strip(), name


def test_the_panel_check_catches_a_new_metric(monkeypatch):
    monkeypatch.setitem(metrics.METRICS, "reward/brand_new", "a metric nobody drew")
    used = {name for e in dashboard_exprs() for name in re.findall(r"\bwaypoint_[A-Za-z0-9_]+", e)}
    assert exported_names() - used - set(NO_PANEL) == {"waypoint_reward_brand_new"}


# ---- the image installs the project and pins only what the project declares -------------------------------------
def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_installs_the_project_with_its_gpu_extra():
    text = dockerfile()
    assert re.search(r"""pip install [^\n]*["']?\.\[gpu\]["']?""", text), "the image must pip install '.[gpu]'"
    assert re.search(r"^COPY pyproject\.toml\b", text, re.M)
    assert re.search(r"^WORKDIR /app$", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    # numeric uid:gid, so that a pod's runAsNonRoot can verify it, and the one the manifests run as
    assert user and re.fullmatch(r"[1-9][0-9]*:[0-9]+", user[-1]), f"USER must be a non-zero uid:gid, got {user}"
    uid, gid = map(int, user[-1].split(":"))
    assert re.search(rf"useradd [^\n]*--uid {uid}\b", text), "the image must create the user with that uid"
    for manifest in MANIFESTS:
        (doc,) = docs(manifest)
        spec = cluster_spec(doc)
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            ctx = group["template"]["spec"]["securityContext"]
            assert ctx["runAsNonRoot"] is True and (ctx["runAsUser"], ctx["runAsGroup"]) == (uid, gid), manifest.name
    assert re.search(r"^FROM \S+", text, re.M)


def test_dockerfile_pins_are_pyproject_dependencies_and_in_range():
    text = dockerfile()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    pins = {}
    for name, version in re.findall(r"([A-Za-z0-9_.\-]+)(?:\[[\w,]+\])?==\$\{(\w+)\}", text):
        assert version in args, f"{name} pinned to undefined ARG {version}"
        pins[normalize(name)] = args[version]
    for name, version in re.findall(r"([A-Za-z0-9_.\-]+)(?:\[[\w,]+\])?==([0-9][^\s\"'\\]*)", text):
        pins[normalize(name)] = version
    assert {"torch", "vllm", "flash-attn", "deepspeed", "ray", "transformers"} <= set(pins), pins
    declared = pyproject_names()
    assert set(pins) <= declared, f"pinned but not declared in pyproject.toml: {sorted(set(pins) - declared)}"

    from packaging.requirements import Requirement
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in map(Requirement, list(meta["dependencies"]) + list(meta["optional-dependencies"]["gpu"])):
        name = normalize(req.name)
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"


# ---- the metric catalogue ---------------------------------------------------------------------------------------
def test_catalogue_exact_keys_and_unknown_keys():
    for key in ("reward/total", "step", "time", "time/initial_schedule_s", "curriculum/switch", "eval/accuracy",
                "care/ema_version", "prm/score_p90", "copo/gate_mean", "loss/kl", "reward_failures_total"):
        assert is_catalogued(key), key
    for key in ("reward/unknown", "loss", "prm/score_p99", "reward_failures/timeout", ""):
        assert not is_catalogued(key), key
    names = exported_names()
    assert "waypoint_step" in names and "waypoint_reward_total" in names
    assert "waypoint_time" not in names                      # JSONL only, never a gauge
    assert all(v.strip() for v in metrics.METRICS.values())


def test_catalogue_patterns_match_families(monkeypatch):
    monkeypatch.setitem(metrics.METRICS, "reward_failures/*", "failures by reason")
    assert is_catalogued("reward_failures/timeout") and is_catalogued("reward_failures/bad_row")
    assert not is_catalogued("reward_failures_by/timeout")
    assert "waypoint_reward_failures_*" not in exported_names()   # patterns name no single gauge
