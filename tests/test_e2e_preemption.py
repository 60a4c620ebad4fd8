"""Preemption end to end: SIGTERM to a training driver mid-run checkpoints at the next step boundary and exits
with 143; `train.resume=true` continues from there, and its next step reproduces an uninterrupted run's.

Three `python -m cluster.train` processes, one after another, each with its own local Ray cluster (in its own
session, so a leftover is killed with it)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CPU_TINY_SMALL
from sessions import kill_session

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 900          # a small cpu_tiny run takes ~1 min on 2 idle cores; generous for a busy machine
OPTS = (*CPU_TINY_SMALL, "rollout.engine=hf")


def start(run_dir: Path, steps: int, *extra: str) -> subprocess.Popen:
    sets = [a for kv in (*OPTS, f"train.run_dir={run_dir}", f"train.steps={steps}", *extra) for a in ("--set", kv)]
    log = open(run_dir.parent / f"{run_dir.name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "cluster.train", "--config", "configs/cpu_tiny.yaml", *sets],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ,
                                 "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})


def finish(p: subprocess.Popen) -> int:
    try:
        return p.wait(timeout=RUN_TIMEOUT_S)
    finally:
        kill_session(p.pid)


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_sigterm_checkpoints_and_the_resumed_step_matches_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    p = start(a, 8)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(records(a)) < 2 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert p.poll() is None, f"the run ended before it could be interrupted: {(tmp_path / 'a.log').read_text()}"
    os.kill(p.pid, signal.SIGTERM)                      # the driver only, as `ray job stop` or a pod eviction
    assert finish(p) == 128 + signal.SIGTERM, (tmp_path / "a.log").read_text()[-3000:]
    summary = json.loads((a / "summary.json").read_text())
    k = summary["preempted"]["step"]
    assert summary["preempted"]["signal"] == "SIGTERM" and 2 <= k < 8
    assert summary["accounting"]["closes"] and summary["accounting"]["consumed"] == 2 * k
    assert [r["step"] for r in records(a)] == list(range(k))
    assert Path(summary["preempted"]["checkpoint"]).name == f"step-{k:08d}"

    assert finish(start(a, k + 1, "train.resume=true")) == 0, (tmp_path / "a.log").read_text()[-3000:]
    assert finish(start(b, k + 1)) == 0, (tmp_path / "b.log").read_text()[-3000:]
    resumed, straight = records(a)[k], records(b)[k]
    assert resumed["step"] == straight["step"] == k
    for key in ("reward/total", "response_tokens", "adv/std", "loss/ratio_mean", "grad_norm", "learner_version"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-5, abs=1e-5), key


def test_a_time_budget_stops_at_a_step_boundary_with_the_final_checkpoint(tmp_path):
    """train.max_minutes: "as many steps as fit" -- the run ends early, exit 0, checkpoint and export written."""
    c = tmp_path / "c"
    c.mkdir()
    assert finish(start(c, 1000, "train.max_minutes=0.05")) == 0, (tmp_path / "c.log").read_text()[-3000:]
    summary = json.loads((c / "summary.json").read_text())
    k = summary["time_budget"]["steps"]
    assert 1 <= k < 1000 and summary["steps"] == k and summary["time_budget"]["max_minutes"] == 0.05
    assert summary["accounting"]["closes"] and summary["accounting"]["consumed"] == 2 * k
    assert [r["step"] for r in records(c)] == list(range(k))
    assert (c / "checkpoint" / f"step-{k:08d}" / "hf" / "config.json").is_file()
