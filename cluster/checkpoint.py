"""Checkpoint and resume: everything the next step depends on, written atomically.

A checkpoint is taken between steps with the feeder paused, so no group is in flight. It holds the learner
(DeepSpeed: weights, optimizer, version), the task schedule (sampler cursor, VAS weights, curriculum
stage), the feeder's counters and sampling-seed counter, the buffer's counters and its pending groups,
and GRPO-CARE's EMA reference when CARE is on. Rollout engines are not saved: on resume the learner's
weights are published to them before any generation.

Layout: `<root>/step-00000042/` per checkpoint and `<root>/latest` naming the newest complete one. A checkpoint
is written into `step-N.tmp/`, renamed into place when complete, and only then does `latest` move (an atomic
file replace), so a crash mid-save leaves the previous checkpoint as `latest`, loadable. The newest `keep`
complete checkpoints stay; older ones, and partial `.tmp` leftovers, are removed after each save.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Callable

import ray

STATE = "controller_state.json"
PENDING = "pending_groups.pkl"
LATEST = "latest"


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def commit_checkpoint(root: str | Path, step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
    """Run `write(dir)` into a temporary directory, then publish it as the checkpoint of `step` and prune."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    if not (tmp / STATE).is_file():
        raise RuntimeError(f"checkpoint writer left no {STATE} in {tmp}")
    shutil.rmtree(final, ignore_errors=True)     # a re-save of the same step (e.g. the final one)
    tmp.rename(final)
    pointer = root / (LATEST + ".tmp")
    pointer.write_text(final.name)
    pointer.replace(root / LATEST)
    complete = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in complete[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob("step-*.tmp"):
        shutil.rmtree(partial, ignore_errors=True)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under `root` (or `root` itself if it is one), or None."""
    root = Path(root)
    if (root / STATE).is_file():
        return root
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / STATE).is_file() else None


def has_checkpoint(root: str | Path) -> bool:
    return latest_checkpoint(root) is not None


def save_checkpoint(root: str | Path, step: int, learner, sampler, feeder, buffer, reference=(),
                    keep: int = 2) -> Path:
    def write(path: Path) -> None:
        learner.save(str(path / "learner"))
        if reference:   # reference actors hold identical EMA copies: save one
            ray.get(reference[0].save.remote(str(path / "reference")))
        snap = ray.get(buffer.snapshot.remote())
        groups = ray.get([wrapped[0] for wrapped, _ in snap["pending"]])
        with open(path / PENDING, "wb") as f:
            pickle.dump([(g, version) for g, (_, version) in zip(groups, snap["pending"])], f)
        state = {"next_step": step, "sampler": sampler.state_dict(), "feeder": feeder.state_dict(),
                 "buffer": snap["state"]}
        (path / STATE).write_text(json.dumps(state, indent=2))

    feeder.pause()
    try:
        return commit_checkpoint(root, step, write, keep)
    finally:
        feeder.resume()


def load_checkpoint(root: str | Path, learner, sampler, feeder, buffer, reference=()) -> int:
    """Restores everything but the rollout weights from the latest checkpoint; returns the step to continue from."""
    path = latest_checkpoint(root)
    if path is None:
        raise FileNotFoundError(f"no complete checkpoint under {root}")
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
