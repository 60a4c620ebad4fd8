"""Weight transport from the learner to the rollout engines, behind one small interface.

`ObjectStoreTransport` (CPU and single node): learner rank 0 puts the full state dict in the object store
once; every rollout actor maps it zero-copy and loads it in place.
`CollectiveTransport` (GPU clusters; gloo on the CPU): learner rank 0 streams the weights, gathered module by
module under ZeRO-3, in size-bounded buckets over a dedicated process group (NCCL on GPUs) straight into every
consumer's engine (vLLM: into each tensor-parallel worker). Every collective has a deadline.
"""
from __future__ import annotations

import time

import ray


def gather_loads(refs: list, consumers: list, timeout_s: float) -> tuple[list[float], list]:
    """The load times of the consumers that took the weights, and the consumers that died meanwhile (their
    replacement gets the weights later, cluster.restarts); any other failure is raised."""
    done, dead = [], []
    for ref, consumer in zip(refs, consumers):
        try:
            done.append(ray.get(ref, timeout=timeout_s))
        except ray.exceptions.RayActorError:
            dead.append(consumer)
    return done, dead


class ObjectStoreTransport:
    def __init__(self, timeout_s: float = 300.0):
        self.timeout_s = timeout_s

    def publish(self, learner, consumers: list, version: int) -> dict:
        t0 = time.perf_counter()
        exported = learner.export_weights()
        load_s, dead = gather_loads([a.load_weights.remote(exported["ref"], version) for a in consumers],
                                    consumers, self.timeout_s)
        return {"weight_sync_s": time.perf_counter() - t0, "weight_bytes": exported["bytes"],
                "weight_load_s_max": max(load_s) if load_s else 0.0, "version": version, "dead": dead}


class CollectiveTransport:
    """The group is formed on the first publish: rank 0 = learner rank 0, then every consumer's ranks. A
    replaced consumer changes the members: the next publish forms a new group (a fresh port) with them. A
    consumer that dies during a broadcast fails it (WeightSyncError past the timeout): a collective cannot
    drop a member midway."""

    def __init__(self, backend: str = "auto", bucket_mb: float = 256.0, timeout_s: float = 300.0):
        self.backend, self.timeout_s = backend, timeout_s
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.members: list | None = None

    def _form_group(self, learner, consumers: list) -> None:
        sender = learner.workers[0]
        specs, dtype = ray.get(sender.weight_specs.remote())
        addr, port = ray.get(sender.master_endpoint.remote())
        ranks = ray.get([c.weight_ranks.remote() for c in consumers])
        names = ["learner-0"] + [f"consumer-{i}/rank-{k}" for i, n in enumerate(ranks) for k in range(n)]
        backend = self.backend
        if backend == "auto":
            backend = "nccl" if ray.get(sender.has_cuda.remote()) else "gloo"
        offsets = [1 + sum(ranks[:i]) for i in range(len(consumers))]
        joins = [sender.join_weight_group.remote(addr, port, names, backend, self.timeout_s, self.bucket_bytes)]
        joins += [c.join_weight_group.remote(addr, port, off, names, backend, self.timeout_s, specs, dtype,
                                             self.bucket_bytes) for c, off in zip(consumers, offsets)]
        ray.get(joins, timeout=self.timeout_s + 60)      # each join raises WeightSyncError past its own deadline
        self.members = list(consumers)

    def publish(self, learner, consumers: list, version: int) -> dict:
        t0 = time.perf_counter()
        if self.members != list(consumers):
            self._form_group(learner, consumers)
        sends = [w.broadcast_weights.remote(version) for w in learner.workers]
        loads = [c.receive_weights.remote(version) for c in consumers]
        sent = ray.get(sends, timeout=self.timeout_s + 60)
        load_s, dead = gather_loads(loads, consumers, self.timeout_s + 60)
        return {"weight_sync_s": time.perf_counter() - t0, "weight_bytes": int(sent[0]),
                "weight_load_s_max": max(load_s) if load_s else 0.0, "version": version, "dead": dead}


TRANSPORTS = {"object_store": ObjectStoreTransport, "collective": CollectiveTransport}
