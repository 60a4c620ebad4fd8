"""Ray start-up and actor placement.

`start_cluster` joins an existing cluster (an address in the config, or RAY_ADDRESS as set by
`ray job submit`) or starts a local one bound to loopback. `spawn_actors` creates named actors; rollout
engines and learner ranks get a placement-group bundle each, checked against the cluster before start-up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.config import WaypointConfig


class PlacementError(RuntimeError):
    pass


def worker_env(use_gpu: bool) -> dict[str, str]:
    env = {
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        # vLLM logs every in-place weight reload at INFO (and a harmless rotary-embedding WARNING)
        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PYTHONWARNINGS": "ignore::UserWarning",
    }
    if not use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    for key in ("WAYPOINT_CACHE", "WAYPOINT_REASONMAP_DIR", "WAYPOINT_LOCAL_CLUSTER", "HF_HUB_OFFLINE"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def start_cluster(cfg: WaypointConfig) -> dict:
    c = cfg.cluster
    if ray.is_initialized():
        return {"mode": "existing"}
    address = c.address or os.environ.get("RAY_ADDRESS")
    if address:
        # Under `ray job submit` RAY_ADDRESS points at the cluster this job runs in. No runtime_env here:
        # it would replace the job's (its working_dir); actors add their env vars on top instead.
        ray.init(address=address, log_to_driver=True)
        return {"mode": "joined", "address": address}
    os.environ["WAYPOINT_LOCAL_CLUSTER"] = "1"
    ray.init(address="local", num_cpus=c.num_cpus or max(os.cpu_count() or 1, _cpus_needed(cfg)),
             num_gpus=0 if not _uses_gpu(cfg) else None, include_dashboard=c.include_dashboard,
             dashboard_host=c.host, _node_ip_address=c.host,
             **({"dashboard_port": c.dashboard_port} if c.include_dashboard else {}),
             log_to_driver=True, configure_logging=False)
    return {"mode": "local", "dashboard": f"http://{c.host}:{c.dashboard_port}" if c.include_dashboard else None}


def _uses_gpu(cfg: WaypointConfig) -> bool:
    care, prm = cfg.algorithm.care, cfg.prm
    return (cfg.rollout.num_gpus > 0 or cfg.learner.num_gpus > 0 or (cfg.algorithm.care_on and care.num_gpus > 0)
            or (prm.enabled and prm.num_gpus > 0))


def _cpus_needed(cfg: WaypointConfig) -> int:
    need = (cfg.rollout.num_actors * cfg.rollout.num_cpus + cfg.learner.num_workers * cfg.learner.num_cpus
            + cfg.reward.num_actors * cfg.reward.num_cpus
            + (cfg.algorithm.care.num_cpus if cfg.algorithm.care_on else 0)
            + (cfg.prm.num_actors * cfg.prm.num_cpus if cfg.prm.enabled else 0))
    return int(need + 0.999)


def bundles_for(cfg: WaypointConfig) -> list[dict]:
    """Rollout engines, learner ranks, the CARE reference model (when on), then the PRM actors (when on)."""
    def bundle(cpu, gpu):
        return {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    care, prm = cfg.algorithm.care, cfg.prm
    return ([bundle(cfg.rollout.num_cpus, cfg.rollout.num_gpus)] * cfg.rollout.num_actors
            + [bundle(cfg.learner.num_cpus, cfg.learner.num_gpus)] * cfg.learner.num_workers
            + ([bundle(care.num_cpus, care.num_gpus)] if cfg.algorithm.care_on else [])
            + ([bundle(prm.num_cpus, prm.num_gpus)] * prm.num_actors if prm.enabled else []))


def check_resources(bundles: list[dict], available: dict) -> None:
    """Fail before start-up, saying what was asked and what exists."""
    asked: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            asked[k] = asked.get(k, 0) + v
    short = {k: (v, available.get(k, 0)) for k, v in asked.items() if v > available.get(k, 0) + 1e-9}
    if short:
        detail = ", ".join(f"{k}: asked {a:g}, cluster has {h:g}" for k, (a, h) in short.items())
        raise PlacementError(f"the cluster cannot place this run ({detail}); bundles: {bundles}")


@dataclass
class Actors:
    rollout: list
    reward: list
    buffer: object
    learner_workers: list
    placement_group: object
    reference: list = field(default_factory=list)   # GRPO-CARE EMA reference (empty when CARE is off)
    prm: list = field(default_factory=list)         # GroundedPRM step scorers (empty when prm.enabled is off)

    def shutdown(self) -> None:
        """Kill every actor and free the placement group (a long-lived cluster outlives the run)."""
        from ray.util.placement_group import remove_placement_group
        for a in [*self.rollout, *self.reward, self.buffer, *self.learner_workers, *self.reference, *self.prm]:
            ray.kill(a, no_restart=True)
        remove_placement_group(self.placement_group)


def reward_options(cfg: WaypointConfig) -> dict:
    """Keyword options of the task's scorer (`rewards.map_vqa.score` or `rewards.math_answer.score`)."""
    if cfg.data.task == "math":
        return {"format_weight": cfg.reward.format_weight, "answer_format": cfg.data.answer_format}
    return {"detail_penalty": cfg.reward.detail_penalty, "format_weight": cfg.reward.format_weight,
            "counting1_detail_enabled": cfg.reward.counting1_detail, "unwrap_text": cfg.reward.unwrap_text,
            "answer_format": cfg.data.answer_format}


def rollout_actor(cfg: WaypointConfig, model_path: str, engine: str, vision: bool, index: int, env: dict,
                  **options):
    """RolloutActor number `index` of this config (`options`: Ray actor options such as name, scheduling)."""
    from actors.rollout import RolloutActor
    r = cfg.rollout
    return RolloutActor.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus, runtime_env=env, **options).remote(
        model_path, engine, vision, r.model_dump(), cfg.data.include_map_text, seed=cfg.train.seed + index,
        dtype=cfg.model.dtype, torch_threads=max(1, int(r.num_cpus)), answer_format=cfg.data.answer_format)


def reward_actor(cfg: WaypointConfig, env: dict, **options):
    """A RewardActor for this config's task (`options`: Ray actor options)."""
    from actors.reward import RewardActor
    return RewardActor.options(num_cpus=cfg.reward.num_cpus, runtime_env=env, **options).remote(
        cfg.data.task, reward_options(cfg), cfg.reward.sample_timeout_s)


def prm_actor(cfg: WaypointConfig, model_path: str, engine: str, env: dict, **options):
    """A PRMActor: tool-only without prm.model, else the PRM checkpoint on a rollout engine."""
    from actors.prm import PRMActor
    p = cfg.prm
    prm_path = p.model
    if prm_path:
        from learner.model_zoo import resolve_model
        prm_path = resolve_model(prm_path, cache_dir=cfg.model.cache_dir, seed=cfg.model.seed)
    return PRMActor.options(num_cpus=p.num_cpus, num_gpus=p.num_gpus, runtime_env=env, **options).remote(
        {**p.model_dump(), "model": prm_path}, model_path, engine="hf" if engine == "hf" else "vllm",
        rollout_cfg=cfg.rollout.model_dump(), seed=cfg.train.seed, torch_threads=max(1, int(p.num_cpus)))


def spawn_actors(cfg: WaypointConfig, model_path: str, vision: bool, engine: str, prefix: str = "") -> Actors:
    """Named actors (`{prefix}rollout-0`, ...), so the Ray dashboard shows which is which."""
    from actors.buffer import TrajectoryBuffer
    from actors.learner_worker import LearnerWorker
    from actors.reference import ReferenceActor

    bundles = bundles_for(cfg)
    check_resources(bundles, ray.cluster_resources())
    pg = placement_group(bundles, strategy=cfg.cluster.placement_strategy, name=f"{prefix}waypoint")
    try:
        ray.get(pg.ready(), timeout=120)
    except ray.exceptions.GetTimeoutError as e:
        raise PlacementError(f"placement group {bundles} not ready after 120 s "
                             f"(cluster: {ray.available_resources()})") from e

    def at(i):
        return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=i)

    env = {"env_vars": worker_env(_uses_gpu(cfg))}

    r = cfg.rollout
    rollout = [rollout_actor(cfg, model_path, engine, vision, i, env, name=f"{prefix}rollout-{i}",
                             scheduling_strategy=at(i)) for i in range(r.num_actors)]
    L = cfg.learner
    learners = [LearnerWorker.options(name=f"{prefix}learner-{i}", num_cpus=L.num_cpus, num_gpus=L.num_gpus,
                                      scheduling_strategy=at(r.num_actors + i), runtime_env=env).remote(
        i, L.num_workers)
                for i in range(L.num_workers)]
    reward = [reward_actor(cfg, env, name=f"{prefix}reward-{i}") for i in range(cfg.reward.num_actors)]
    buffer = TrajectoryBuffer.options(name=f"{prefix}buffer", runtime_env=env).remote(
        cfg.buffer.capacity, cfg.buffer.max_staleness)
    reference = []
    if cfg.algorithm.care_on:
        care = cfg.algorithm.care
        reference = [ReferenceActor.options(
            name=f"{prefix}reference", num_cpus=care.num_cpus, num_gpus=care.num_gpus, runtime_env=env,
            scheduling_strategy=at(r.num_actors + L.num_workers)).remote(
            model_path, vision, care.model_dump(), dtype=cfg.model.dtype, torch_threads=max(1, int(care.num_cpus)))]
    first_prm = r.num_actors + L.num_workers + (1 if cfg.algorithm.care_on else 0)
    prm = [prm_actor(cfg, model_path, engine, env, name=f"{prefix}prm-{i}", scheduling_strategy=at(first_prm + i))
           for i in range(cfg.prm.num_actors if cfg.prm.enabled else 0)]
    ray.get([a.ready.remote() for a in rollout + reference + prm])   # surface start-up errors here, not mid-run
    return Actors(rollout, reward, buffer, learners, pg, reference, prm)
