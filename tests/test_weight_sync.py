"""The collective weight transport's pieces on the CPU (gloo): bucket plans, broadcast, and deadlines that turn
a missing peer into a clear error instead of a hang. The end-to-end sync through Ray actors (learner -> vLLM
workers, ZeRO-3) is in test_e2e_loop.py::test_rollout_weights_follow_the_learner."""
import multiprocessing as mp
import time

import pytest
import torch

from actors.collective import WeightGroup, WeightSyncError
from learner.weight_buckets import TensorSpec, bucket_plan, unpack
from actors.learner_worker import free_port

NAMES = ["learner-0", "consumer-0"]
# A spawned peer must import torch and Ray before it can join (2.6-3.3 s idle, far more on a busy machine): it
# reports in first, so no deadline below counts its start-up. The deadlines under test are then a few seconds of
# waiting on a peer that is already running, with generous upper bounds for a loaded machine.
STARTUP_S = 300.0
SKIP_DEADLINE_S = 8.0


def test_bucket_plan_packs_consecutive_tensors_up_to_the_limit():
    specs = [TensorSpec("a", (4,)), TensorSpec("b", (2, 2)), TensorSpec("c", (10,)), TensorSpec("d", (2,))]
    # float32: 16 + 16 bytes fit 32; c (40 bytes) travels alone; d starts a new bucket
    assert bucket_plan(specs, 32, 4) == [[0, 1], [2], [3]]
    assert bucket_plan(specs, 10**6, 4) == [[0, 1, 2, 3]]
    assert bucket_plan(specs, 1, 2) == [[0], [1], [2], [3]]
    flat = torch.arange(8.0)
    (a, ta), (b, tb) = unpack(flat, specs, [0, 1])
    assert (a, b) == ("a", "b") and ta.tolist() == [0, 1, 2, 3] and tb.tolist() == [[4, 5], [6, 7]]


def _member(port: int, mode: str, queue) -> None:
    queue.put("started")
    group = WeightGroup("127.0.0.1", port, 1, NAMES, "gloo", 60.0)
    if mode == "idle":           # joins, then never takes part in the broadcast
        time.sleep(4 * SKIP_DEADLINE_S)
        return
    t = torch.zeros(4)
    group.broadcast(t, "v1/b0")
    queue.put(t.tolist())


def _spawn(mode: str):
    ctx = mp.get_context("spawn")
    port, queue = free_port(), ctx.Queue()
    proc = ctx.Process(target=_member, args=(port, mode, queue), daemon=True)
    proc.start()
    assert queue.get(timeout=STARTUP_S) == "started"
    return proc, port, queue


def test_broadcast_reaches_the_peer():
    proc, port, queue = _spawn("ok")
    group = WeightGroup("127.0.0.1", port, 0, NAMES, "gloo", 60.0)
    group.broadcast(torch.arange(4.0), "v1/b0")
    assert queue.get(timeout=60) == [0.0, 1.0, 2.0, 3.0]
    proc.join(60)


def test_a_peer_that_never_joins_is_named_after_the_deadline():
    t0 = time.monotonic()
    with pytest.raises(WeightSyncError, match="consumer-0 did not join within 2 s"):
        WeightGroup("127.0.0.1", free_port(), 0, NAMES, "gloo", 2.0)
    assert 1.6 < time.monotonic() - t0 < 2.0 + 60


def test_a_peer_that_skips_the_broadcast_fails_it_after_the_timeout():
    proc, port, _ = _spawn("idle")
    group = WeightGroup("127.0.0.1", port, 0, NAMES, "gloo", SKIP_DEADLINE_S)
    t0 = time.monotonic()
    with pytest.raises(WeightSyncError, match="peers that never arrived: consumer-0"):
        group.broadcast(torch.arange(4.0), "v7/b0")
    assert 0.8 * SKIP_DEADLINE_S < time.monotonic() - t0 < SKIP_DEADLINE_S + 60
    proc.kill()
