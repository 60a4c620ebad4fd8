"""Bucketed weight broadcast over a dedicated process group: gloo on the CPU, NCCL on GPUs.

Members: rank 0 is learner rank 0 (the sender); every receiver (a rollout actor, or each tensor-parallel vLLM
worker, or the EMA reference) is one more rank. The group is built from its own TCPStore, apart from the
learner's DeepSpeed group, so it can span processes that share no default group.

Both sides derive the same bucket plan from the same tensor list, so only one contiguous buffer per bucket
crosses the wire. Every wait has a deadline: a peer that never joins, or never takes part in a broadcast,
becomes a `WeightSyncError` naming it instead of a hang.
"""
from __future__ import annotations

import time
from datetime import timedelta

import torch
import torch.distributed as dist

from learner.weight_buckets import TensorSpec, bucket_plan, unpack

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class WeightSyncError(RuntimeError):
    """A weight-group collective that did not complete in time; the message names the missing peers."""


class WeightGroup:
    """One member of the weight-broadcast group. `names[r]` says who rank r is, for error messages."""

    def __init__(self, addr: str, port: int, rank: int, names: list[str], backend: str, timeout_s: float):
        self.rank, self.world, self.names = rank, len(names), names
        self.backend, self.timeout = backend, timedelta(seconds=timeout_s)
        try:   # the master does not wait for clients here: we wait below, with a deadline that names them
            store = dist.TCPStore(addr, port, world_size=self.world, is_master=rank == 0, timeout=self.timeout,
                                  wait_for_workers=False)
        except Exception as e:  # noqa: BLE001 - the sender's endpoint is unreachable or taken
            raise WeightSyncError(f"{names[rank]} cannot reach the weight group at {addr}:{port} within "
                                  f"{timeout_s:g} s ({type(e).__name__}: {e}); members: {names}") from e
        self.store = dist.PrefixStore("waypoint-weights", store)
        self.store.set(f"joined/{rank}", "1")
        self._await("joined", timeout_s)
        if backend == "nccl":
            opts = dist.ProcessGroupNCCL.Options()
            opts._timeout = self.timeout
            self.pg = dist.ProcessGroupNCCL(self.store, rank, self.world, opts)
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.pg = dist.ProcessGroupGloo(self.store, rank, self.world, self.timeout)
            self.device = torch.device("cpu")

    def _await(self, key: str, timeout_s: float) -> None:
        """Wait until every member has set `key`; past the deadline, name those that have not."""
        deadline = time.monotonic() + timeout_s
        while self._missing(key):
            if time.monotonic() > deadline:
                raise WeightSyncError(f"weight group: {', '.join(self._missing(key))} did not join within "
                                      f"{timeout_s:g} s (seen from {self.names[self.rank]}); members: {self.names}")
            time.sleep(0.05)

    def _missing(self, key: str) -> list[str]:
        """Members that have not set `key` in the store (checked without blocking)."""
        return [self.names[r] for r in range(self.world) if not self.store.check([f"{key}/{r}"])]

    def broadcast(self, flat: torch.Tensor, tag: str) -> None:
        """Broadcast `flat` from rank 0 in place; `tag` (version/bucket) marks who arrived, for the error."""
        self.store.set(f"{tag}/{self.rank}", "1")
        t0 = time.perf_counter()
        try:
            self.pg.broadcast(flat, 0, self.timeout).wait()
        except Exception as e:  # noqa: BLE001 - a timeout or a dead peer: name who never arrived
            missing = self._missing(tag)
            raise WeightSyncError(
                f"weight broadcast {tag} failed on {self.names[self.rank]} after {time.perf_counter() - t0:.1f} s "
                f"(timeout {self.timeout.total_seconds():g} s): "
                f"{'peers that never arrived: ' + ', '.join(missing) if missing else 'all peers arrived'}; "
                f"{type(e).__name__}: {str(e)[:200]}") from e


def send_buckets(group: WeightGroup, tensors, specs: list[TensorSpec], plan: list[list[int]], dtype: torch.dtype,
                 version: int) -> int:
    """Rank 0: stream `tensors` (an iterator of (name, tensor) in spec order) bucket by bucket. Returns bytes."""
    sent = 0
    source = iter(tensors)
    for b, indices in enumerate(plan):
        parts = []
        for i in indices:
            name, t = next(source)
            if name != specs[i].name:
                raise ValueError(f"weight stream out of order: got {name}, plan expects {specs[i].name}")
            parts.append(t.detach().to(device=group.device, dtype=dtype).reshape(-1))
        flat = torch.cat(parts) if len(parts) > 1 else parts[0].contiguous()
        group.broadcast(flat, f"v{version}/b{b}")
        sent += flat.numel() * flat.element_size()
    return sent


def receive_buckets(group: WeightGroup, specs: list[TensorSpec], plan: list[list[int]], dtype: torch.dtype,
                    version: int):
    """Receivers: yield each bucket's (name, tensor) pairs as it arrives (the tensors own their memory)."""
    for b, indices in enumerate(plan):
        flat = torch.empty(sum(specs[i].numel for i in indices), dtype=dtype, device=group.device)
        group.broadcast(flat, f"v{version}/b{b}")
        yield unpack(flat, specs, indices)


class Member:
    """A member's whole view of the group: the group itself, the tensor list and the bucket plan. Rank 0 sends
    (`send`), every other rank receives (`buckets` / `pairs`)."""

    def __init__(self, addr: str, port: int, rank: int, names: list[str], backend: str, timeout_s: float,
                 specs: list[tuple[str, tuple]], dtype: str, bucket_bytes: int):
        self.group = WeightGroup(addr, port, rank, names, backend, timeout_s)
        self.specs = [TensorSpec(n, tuple(s)) for n, s in specs]
        self.dtype = DTYPES[dtype]
        self.plan = bucket_plan(self.specs, bucket_bytes, self.dtype.itemsize)

    def send(self, tensors, version: int) -> int:
        return send_buckets(self.group, tensors, self.specs, self.plan, self.dtype, version)

    def buckets(self, version: int):
        return receive_buckets(self.group, self.specs, self.plan, self.dtype, version)

    def pairs(self, version: int) -> list[tuple[str, torch.Tensor]]:
        return [p for pairs in self.buckets(version) for p in pairs]
