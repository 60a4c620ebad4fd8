"""The learner's full weights as a stream of (name, tensor), for the bucketed broadcast (actors/collective.py).

Under ZeRO-3 every rank holds a shard of each parameter: the stream gathers one module's parameters at a time
(all ranks must iterate together, since the gather is a collective) and releases them before the next, so no
rank ever holds more than one module's full parameters beyond its shard. Stages 0-2 read the local copy.
"""
from __future__ import annotations

import itertools
from contextlib import nullcontext

import torch

from learner.lora import is_lora, merged_items
from learner.weight_buckets import TensorSpec


def _owner(module: torch.nn.Module, key: str) -> tuple[torch.nn.Module, str]:
    path, _, attr = key.rpartition(".")
    return (module.get_submodule(path) if path else module), attr


def state_specs(module: torch.nn.Module) -> list[TensorSpec]:
    """Name and full shape of every state-dict entry, in state-dict order (ZeRO-3 shapes from `ds_shape`); a LoRA
    model streams its merged base weights."""
    if is_lora(module):
        return [TensorSpec(k, tuple(t.shape)) for k, t in merged_items(module)]
    specs = []
    for key in module.state_dict().keys():
        owner, attr = _owner(module, key)
        t = getattr(owner, attr)
        specs.append(TensorSpec(key, tuple(getattr(t, "ds_shape", t.shape))))
    return specs


def iter_full_state(module: torch.nn.Module, zero_stage: int):
    """(name, full tensor) in state-dict order; tied weights appear under each of their names."""
    if is_lora(module):           # config refuses LoRA with ZeRO-3: every rank holds the whole model
        yield from merged_items(module)
        return
    keys = list(module.state_dict().keys())
    for path, group in itertools.groupby(keys, key=lambda k: k.rpartition(".")[0]):
        group = list(group)
        owner = module.get_submodule(path) if path else module
        tensors = [getattr(owner, k.rpartition(".")[2]) for k in group]
        params = [t for t in tensors if isinstance(t, torch.nn.Parameter)]
        if zero_stage == 3 and params:
            import deepspeed
            gather = deepspeed.zero.GatheredParameters(params, modifier_rank=None)
        else:
            gather = nullcontext()
        with gather:
            for key in group:
                yield key, getattr(owner, key.rpartition(".")[2]).detach()
