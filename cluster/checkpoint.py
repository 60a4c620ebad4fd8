"""Checkpoint and resume: everything the next step depends on.

A checkpoint is taken between steps with the feeder paused, so no group is in flight. It holds the learner
(DeepSpeed: weights, optimizer, version), the task schedule (sampler cursor, VAS weights, curriculum
stage), the feeder's counters and sampling-seed counter, the buffer's counters and its pending groups,
and GRPO-CARE's EMA reference when CARE is on. Rollout engines are not saved: on resume the learner's
weights are published to them before any generation.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import ray

STATE = "controller_state.json"
PENDING = "pending_groups.pkl"


def save_checkpoint(path: str | Path, step: int, learner, sampler, feeder, buffer, reference=()) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    feeder.pause()
    try:
        learner.save(str(path / "learner"))
        if reference:   # reference actors hold identical EMA copies: save one
            ray.get(reference[0].save.remote(str(path / "reference")))
        snap = ray.get(buffer.snapshot.remote())
        groups = ray.get([wrapped[0] for wrapped, _ in snap["pending"]])
        with open(path / PENDING, "wb") as f:
            pickle.dump([(g, version) for g, (_, version) in zip(groups, snap["pending"])], f)
        state = {"next_step": step, "sampler": sampler.state_dict(), "feeder": feeder.state_dict(),
                 "buffer": snap["state"]}
        tmp = path / (STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path / STATE)     # the state file appears last: its presence marks a complete checkpoint
    finally:
        feeder.resume()
    return path


def has_checkpoint(path: str | Path) -> bool:
    return (Path(path) / STATE).is_file()


def load_checkpoint(path: str | Path, learner, sampler, feeder, buffer, reference=()) -> int:
    """Restores everything but the rollout weights; returns the step to continue from."""
    path = Path(path)
    state = json.loads((path / STATE).read_text())
    version = learner.load(str(path / "learner"))
    if reference:
        if not (path / "reference").is_dir():
            raise RuntimeError(f"CARE is on but checkpoint {path} has no EMA reference (saved without CARE?)")
        ray.get([r.load.remote(str(path / "reference")) for r in reference])
    if version != state["next_step"]:
        raise RuntimeError(f"checkpoint at {path} is inconsistent: learner version {version}, "
                           f"controller step {state['next_step']}")
    sampler.load_state_dict(state["sampler"])
    feeder.load_state_dict(state["feeder"])
    with open(path / PENDING, "rb") as f:
        pending = pickle.load(f)
    ray.get(buffer.restore.remote(state["buffer"], [[[ray.put(g)], v] for g, v in pending]))
    return state["next_step"]
