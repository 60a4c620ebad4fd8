"""Weight receiving inside vLLM's workers: a `worker_extension_cls` mixed into every (tensor-parallel) worker.

Each worker joins the weight group as its own rank (rank_offset + its vLLM rank) and receives the learner's
buckets directly into its device, the pattern of vLLM's documented RLHF example. On CUDA each bucket is loaded
as it arrives through the model's `load_weights`; on the CPU build (where that path fails for this model) the
buckets are collected and loaded at once through the worker's `reload_weights`, which needs the full set,
tied `lm_head.weight` included. Method names carry a `waypoint_` prefix so they cannot clash with the worker's.
"""
from __future__ import annotations

import time


class WeightReceiver:
    def waypoint_join_weight_group(self, addr: str, port: int, rank_offset: int, names: list[str], backend: str,
                                   timeout_s: float, specs: list[tuple[str, tuple]], dtype: str,
                                   bucket_bytes: int) -> int:
        from actors.collective import Member
        rank = rank_offset + int(getattr(self, "rank", 0))
        self._waypoint_member = Member(addr, port, rank, names, backend, timeout_s, specs, dtype, bucket_bytes)
        return rank

    def waypoint_receive_weights(self, version: int) -> float:
        t0 = time.perf_counter()
        member = self._waypoint_member
        if member.group.device.type == "cuda":
            for pairs in member.buckets(version):
                self.model_runner.model.load_weights(weights=pairs)
        else:
            self.reload_weights(weights_iterator=member.pairs(version))
        return time.perf_counter() - t0
