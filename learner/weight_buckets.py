"""The bucket plan of the weight broadcast: which tensors travel together in one contiguous buffer.

Sender (learner rank 0, `learner/weight_export.py`) and receivers (`actors/collective.py`) derive the same plan
from the same tensor list, so only the buffers cross the wire, with no per-bucket metadata.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def bucket_plan(specs: list[TensorSpec], bucket_bytes: int, itemsize: int) -> list[list[int]]:
    """Consecutive tensors packed greedily into buckets of at most `bucket_bytes` (a larger tensor travels
    alone). Sender and receivers call this with the same arguments, so no per-bucket metadata is sent."""
    buckets: list[list[int]] = []
    current, size = [], 0
    for i, spec in enumerate(specs):
        nbytes = spec.numel * itemsize
        if current and size + nbytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current.append(i)
        size += nbytes
    if current:
        buckets.append(current)
    return buckets


def unpack(flat: torch.Tensor, specs: list[TensorSpec], indices: list[int]) -> list[tuple[str, torch.Tensor]]:
    """Views of one received bucket as (name, tensor) pairs."""
    out, offset = [], 0
    for i in indices:
        s = specs[i]
        out.append((s.name, flat[offset:offset + s.numel].view(s.shape)))
        offset += s.numel
    return out
