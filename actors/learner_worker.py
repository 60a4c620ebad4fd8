"""LearnerWorker: one rank of the DeepSpeed learner group, as a Ray actor; LearnerGroup drives them all.

Every rank receives the references of the whole batch and fetches it from the object store itself (the
controller never touches trajectories); each computes the batch's advantages (so estimators may use
batch-level statistics) and trains on its own shard.
"""
from __future__ import annotations

import os
import socket
from datetime import timedelta

import ray


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@ray.remote
class LearnerWorker:
    def __init__(self, rank: int, world_size: int):
        self.rank, self.world = rank, world_size
        self.learner = None

    def master_endpoint(self) -> tuple[str, int]:
        return "127.0.0.1" if _local() else ray.util.get_node_ip_address(), free_port()

    def setup(self, endpoint: tuple[str, int], backend: str, timeout_s: float, spec) -> bool:
        """`endpoint`: rank 0's (address, port) from master_endpoint (passed as its ref: no driver round trip);
        `spec`: a learner.engine.LearnerSpec, the same for every rank."""
        import deepspeed
        import torch
        addr, port = endpoint
        # LOCAL_RANK 0: Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES, so its device is always cuda:0
        os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port), RANK=str(self.rank),
                          WORLD_SIZE=str(self.world), LOCAL_RANK="0")
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False,
                                   timeout=timedelta(seconds=timeout_s), rank=self.rank, world_size=self.world)
        from learner.engine import PolicyLearner
        self.learner = PolicyLearner(spec, rank=self.rank, world_size=self.world)
        return True

    def train_step(self, batch: list) -> dict | None:
        """`batch` is [[ref], ...]: wrapped references of scored groups, in the same order on every rank."""
        groups = ray.get([w[0] for w in batch])
        stats = self.learner.train_step(groups)
        return stats if self.rank == 0 else None

    def export_weights(self) -> dict | None:
        """All ranks call (ZeRO-3 gathers); rank 0 returns {"ref": [ref], "bytes": n} of a name -> array dict."""
        state = self.learner.full_state_dict()
        if state is None:
            return None
        return {"ref": [ray.put(state)], "bytes": int(sum(a.nbytes for a in state.values()))}

    # ---- the collective weight transport (actors/collective.py); only rank 0 is a member of the group ----
    def weight_specs(self) -> tuple[list[tuple[str, tuple]], str]:
        """(name, full shape) of every weight in stream order, and the dtype they travel in."""
        from learner.weight_export import state_specs
        module = self.learner.engine.module
        dtype = str(next(module.parameters()).dtype).removeprefix("torch.")
        return [(s.name, s.shape) for s in state_specs(module)], dtype

    def has_cuda(self) -> bool:
        import torch
        return torch.cuda.is_available()

    def join_weight_group(self, addr: str, port: int, names: list[str], backend: str, timeout_s: float,
                          bucket_bytes: int) -> int:
        """Rank 0 only: become the sender (rank 0) of the weight group; returns the number of buckets."""
        from actors.collective import Member
        self.weight_member = Member(addr, port, 0, names, backend, timeout_s, *self.weight_specs(), bucket_bytes)
        return len(self.weight_member.plan)

    def broadcast_weights(self, version: int) -> int:
        """Every rank iterates the weight stream (ZeRO-3 gathers are collective); rank 0 broadcasts it.
        Returns the bytes sent (0 on other ranks)."""
        from learner.weight_export import iter_full_state
        stream = iter_full_state(self.learner.engine.module, self.learner.zero_stage)
        if self.rank != 0:
            for _ in stream:
                pass
            return 0
        return self.weight_member.send(stream, version)

    def save(self, path: str) -> None:
        self.learner.save(path)

    def export_hf(self, out_dir: str) -> str | None:
        return self.learner.export_hf(out_dir)

    def eval_loss(self, batch: list) -> dict | None:
        stats = self.learner.eval_loss(ray.get([w[0] for w in batch]))
        return stats if self.rank == 0 else None

    def load(self, path: str) -> int:
        return self.learner.load(path)

    def shutdown(self) -> None:
        import torch.distributed as dist
        if dist.is_initialized():   # without this a gloo rank aborts at interpreter exit
            dist.destroy_process_group()


def _local() -> bool:
    return os.environ.get("WAYPOINT_LOCAL_CLUSTER") == "1"


class LearnerDiedError(RuntimeError):
    """A learner rank's actor died (its process, node or GPU); the group cannot continue."""


class LearnerGroup:
    """Driver-side handle: the L workers behave like one learner."""

    def __init__(self, workers: list, spec, backend: str, timeout_s: float = 600.0, wait: bool = True):
        """`spec`: a learner.engine.LearnerSpec, the same for every rank. `wait=False`: DeepSpeed set-up runs in
        the background; `setup_refs` are the tasks to wait for."""
        self.workers = workers
        endpoint = workers[0].master_endpoint.remote()
        self.setup_refs = [w.setup.remote(endpoint, backend, timeout_s, spec) for w in workers]
        if wait:
            ray.get(self.setup_refs)

    def step(self, batch: list) -> dict:
        """Rank 0's stats. Ranks are waited for as they finish, so a dead rank is reported at once (the others
        would sit in a collective until its timeout)."""
        refs = [w.train_step.remote(batch) for w in self.workers]
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(ready[0])
            except ray.exceptions.RayActorError as e:
                raise LearnerDiedError(f"learner rank {refs.index(ready[0])} of {len(refs)} died during a "
                                       f"step ({type(e).__name__})") from e
        return ray.get(refs[0])

    def export_weights(self) -> dict:
        return ray.get([w.export_weights.remote() for w in self.workers])[0]

    def save(self, path: str) -> None:
        ray.get([w.save.remote(path) for w in self.workers])

    def export_hf(self, out_dir: str) -> str:
        return ray.get([w.export_hf.remote(out_dir) for w in self.workers])[0]

    def eval_loss(self, batch: list) -> dict:
        return ray.get([w.eval_loss.remote(batch) for w in self.workers])[0]

    def load(self, path: str) -> int:
        return ray.get([w.load.remote(path) for w in self.workers])[0]

    def shutdown(self) -> None:
        ray.get([w.shutdown.remote() for w in self.workers])
