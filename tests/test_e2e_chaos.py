"""Chaos: a reward actor is killed mid-run (kill -9 semantics, `ray.kill`). The feeder replaces it, re-scores
the groups that were routed to it from their surviving rollout output, every step completes and the
accounting closes with no group lost. (Rollout-actor and CARE-reference restarts are not built yet.)"""
import json
import threading
import time

import pytest
import ray
from conftest import small_cfg

pytestmark = pytest.mark.slow

DEADLINE_S = 900


def kill_when(run_dir, suffix: str, after_steps: int, done: threading.Event, log: list) -> None:
    """Once `after_steps` steps are logged, kill the named actor whose name ends with `suffix`."""
    deadline = time.monotonic() + DEADLINE_S
    metrics = run_dir / "metrics.jsonl"
    while not done.is_set() and time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= after_steps:
            names = [n for n in ray.util.list_named_actors() if n.endswith(suffix)]
            if names:
                ray.kill(ray.get_actor(names[0]), no_restart=True)
                log.append(names[0])
                return
        time.sleep(0.2)


def test_a_killed_reward_actor_is_replaced_and_nothing_is_lost(local_ray, tmp_path):
    from cluster.controller import train
    cfg = small_cfg(tmp_path, "train.steps=6", "reward.num_actors=2", "rollout.engine=hf")
    done, killed = threading.Event(), []
    killer = threading.Thread(target=kill_when, args=(tmp_path / "run", "/reward-0", 2, done, killed))
    killer.start()
    try:
        summary = train(cfg)
    finally:
        done.set()
        killer.join()
    assert killed, "the reward actor was never killed"
    acct = summary["accounting"]
    assert acct["closes"] and acct["consumed"] == 6 * 2, acct
    assert acct["restarts"] == {"reward": 1} and acct["rerouted"]["reward"] >= 1, acct
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(6))
    assert records[-1]["faults/restarts/reward"] == 1
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["accounting"]["restarts"] == {"reward": 1}
