"""`ray job submit` against a long-lived Ray head: the deployment path of a real cluster, on loopback.

A head is started with `ray start --head` (its own ports, its own temp dir, token auth with a token that only
this test knows), the training entrypoint is submitted with `--working-dir .`, and the job must SUCCEED and
write its metrics where it was told. The driver joins the head through RAY_ADDRESS (cluster.launch.start_cluster)
and its actors keep the job's working_dir (they add env vars on top of it).

Clean-up: `ray stop` would stop every Ray cluster on the machine (it matches process names), including one a
developer or another test runs at the same time. Instead the head is started in a new session, and everything in
that session (GCS, raylet, dashboard, workers, the job's driver and actors; Ray gives workers their own process
groups but not their own sessions) is terminated in a finally.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sessions import kill_session

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent           # the venv's bin: `ray`, and the job's `python`
RAY = VENV_BIN / "ray"
STEPS = 3
JOB_TIMEOUT_S = 600                              # cpu_tiny, 3 steps: ~1-2 min on 2 busy cores


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:               # 401/403 with token auth: the server is up
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
            time.sleep(1.0)


def cache_dir() -> str:
    return os.environ.get("WAYPOINT_CACHE") or os.path.expanduser("~/.cache/waypoint")


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head on 127.0.0.1 with free ports and token auth; yields (dashboard url, env, temp dir)."""
    gcs_port, dash_port, client_port, agent_port = free_ports(4)
    # Ray's temp dir holds Unix sockets (path limit ~107 bytes), so it lives directly under /tmp, not tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="wpray-", dir="/tmp")
    token_file = tmp_path / "ray_auth_token"
    token_file.write_text(secrets.token_hex(32))
    token_file.chmod(0o600)
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)                     # this head, not whatever the caller points at
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", None)  # keep .gitignore'd paths (.venv, 4 GB) out of the upload
    env.update({
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",    # keep every Ray address on 127.0.0.1
        # Token auth stays on (Ray 2.60 turns it on by default for the job API) with a token only this test
        # knows: head, workers, the job and the CLI all read it from this file.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",   # the job's `python` is the venv's
        "WAYPOINT_CACHE": cache_dir(),
        "PYTHONUNBUFFERED": "1",
    })
    cmd = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
           f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent_port}",
           "--num-cpus=4", "--object-store-memory=1000000000", f"--temp-dir={temp_dir}",
           "--disable-usage-stats"]
    # A new session: everything this head spawns stays in it, and only it is killed afterwards.
    head = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sid = head.pid
    try:
        try:
            out, _ = head.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            head.kill()
            out, _ = head.communicate()
            pytest.fail(f"`ray start --head` did not return within 180 s:\n{out[-4000:]}")
        assert head.returncode == 0, f"`ray start --head` failed ({head.returncode}):\n{out[-4000:]}"
        url = f"http://127.0.0.1:{dash_port}"
        wait_http(f"{url}/api/version", timeout_s=120)
        yield url, env, Path(temp_dir)
    finally:
        survivors = kill_session(sid)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not survivors, f"Ray head processes survived clean-up: {survivors}"


def digest(out: str, tail: int = 4000) -> str:
    """Error lines (vLLM's crash dumps can push the cause out of a plain tail) plus the tail."""
    keys = ("Traceback", "Error", "error:", "Exception", "FAILED", "Killed", "WARNING: accounting")
    hits = [line[:400] for line in out.splitlines() if any(k in line for k in keys)][:40]
    return "error lines:\n" + "\n".join(hits) + f"\n... last {tail} chars:\n" + out[-tail:]


def run_cli(args: list[str], env: dict, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout_s)


def test_job_submit_trains_on_a_ray_head(ray_head, tmp_path):
    url, env, temp_dir = ray_head
    run_dir = (tmp_path / "run").resolve()
    job_id = f"waypoint-e2e-{secrets.token_hex(4)}"
    # Ray 2.60 leaves .venv and .git out of `--working-dir` uploads by default and honours .gitignore (unless
    # RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1, removed above); the explicit excludes keep the 4 GB venv out even then.
    runtime_env = {"excludes": [".venv", ".git", "runs", ".pytest_cache", "__pycache__"]}
    submit = ["job", "submit", "--address", url, "--submission-id", job_id, "--working-dir", ".",
              "--runtime-env-json", json.dumps(runtime_env), "--",
              "python", "-m", "cluster.train", "--config", "configs/cpu_tiny.yaml", "--set", f"train.steps={STEPS}",
              "--set", "train.progress=false", "--set", f"train.run_dir={run_dir}",
              "--set", "cluster.include_dashboard=false"]
    t0 = time.monotonic()
    try:
        proc = run_cli(submit, env, JOB_TIMEOUT_S)    # blocks, streams the job's logs, exit 0 iff SUCCEEDED
    except subprocess.TimeoutExpired as e:
        out = e.output or ""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        (tmp_path / "job.log").write_text(out)
        pytest.fail(f"job {job_id} still running after {JOB_TIMEOUT_S} s (log {tmp_path / 'job.log'}); "
                    f"{digest(out)}")
    (tmp_path / "job.log").write_text(proc.stdout)
    print(f"\n[job submit] {time.monotonic() - t0:.1f} s, exit {proc.returncode}, log {tmp_path / 'job.log'}")
    status = run_cli(["job", "status", "--address", url, job_id], env, 120)
    assert proc.returncode == 0 and f"job '{job_id}' succeeded" in status.stdout.lower(), (
        f"submit exit {proc.returncode}; status:\n{status.stdout[-2000:]}\njob output: {digest(proc.stdout)}")

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines if x.strip()]
    assert [r["step"] for r in records] == list(range(STEPS)), digest(proc.stdout)
    assert all(math.isfinite(r["reward/total"]) and math.isfinite(r["time/weight_sync_s"]) for r in records)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["accounting"]["closes"], summary

    # the working_dir package the job ran from: the repository's code, without the virtual environment
    pkgs = [p for p in temp_dir.glob("session_*/runtime_resources/working_dir_files/*") if p.is_dir()]
    assert pkgs, "no working_dir package found on the head"
    for p in pkgs:
        assert (p / "cluster" / "train.py").is_file() and not (p / ".venv").exists(), sorted(os.listdir(p))
