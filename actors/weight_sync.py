"""Weight transport from the learner to the rollout engines, behind one small interface.

`ObjectStoreTransport` (CPU and single node): learner rank 0 puts the full state dict in the object store
once; every rollout actor maps it zero-copy and loads it in place. A collective transport (NCCL broadcast
in buckets) implements the same `publish` for GPU clusters.
"""
from __future__ import annotations

import time

import ray


class ObjectStoreTransport:
    def __init__(self, timeout_s: float = 300.0):
        self.timeout_s = timeout_s

    def publish(self, learner, rollout_actors: list, version: int) -> dict:
        t0 = time.perf_counter()
        exported = learner.export_weights()
        load_s = ray.get([a.load_weights.remote(exported["ref"], version) for a in rollout_actors],
                         timeout=self.timeout_s)
        return {"weight_sync_s": time.perf_counter() - t0, "weight_bytes": exported["bytes"],
                "weight_load_s_max": max(load_s) if load_s else 0.0, "version": version}


TRANSPORTS = {"object_store": ObjectStoreTransport}
