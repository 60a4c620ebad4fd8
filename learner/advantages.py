"""Advantage estimators: rewards [groups, G] -> advantages [groups, G].

Each estimator is one small pure function registered by name:

    @register_advantage("my_estimator")
    def my_estimator(rewards, **kwargs): ...

and looked up with `get_advantage_estimator("my_estimator")`. The registry lives in this module, so a Ray worker
that imports `learner.advantages` sees the built-in estimators (look names up inside the worker).

Estimators accept and ignore keyword arguments they do not use (the learner passes one config dict, e.g. `eps`,
to whichever estimator is configured). They accept a numpy array or a torch tensor and return the same kind.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

try:  # torch is optional here: the math is numpy
    import torch
except ImportError:  # pragma: no cover - torch is a learner dependency
    torch = None

AdvantageFn = Callable[..., "np.ndarray"]
ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {}


def register_advantage(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    """Decorator: `@register_advantage("grpo")` adds the function to ADVANTAGE_ESTIMATORS under `name`."""
    def deco(fn: AdvantageFn) -> AdvantageFn:
        if name in ADVANTAGE_ESTIMATORS and ADVANTAGE_ESTIMATORS[name] is not fn:
            raise ValueError(f"advantage estimator {name!r} is already registered")
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn
    return deco


def get_advantage_estimator(name: str) -> AdvantageFn:
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"unknown advantage estimator {name!r}; known: {sorted(ADVANTAGE_ESTIMATORS)}") from None


# ---- numpy/torch plumbing ---------------------------------------------------------------------------------
def _to_numpy(rewards) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """rewards as a float64 [groups, G] array, plus a function that converts a result back to the input kind."""
    if torch is not None and isinstance(rewards, torch.Tensor):
        dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
        device = rewards.device
        arr = rewards.detach().cpu().to(torch.float64).numpy()
        back = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    else:
        arr = np.asarray(rewards, dtype=np.float64)
        back = lambda a: a  # noqa: E731
    if arr.ndim != 2:
        raise ValueError(f"rewards must be [groups, G], got shape {arr.shape}")
    return arr, back


def _constant_rows(r: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """[groups] bool: True where every reward in the row is equal (max - min <= tol)."""
    if r.shape[1] == 0:
        return np.ones(r.shape[0], dtype=bool)
    return (r.max(axis=1) - r.min(axis=1)) <= tol


# ---- estimators -------------------------------------------------------------------------------------------
@register_advantage("grpo")
def group_normalized(rewards, eps: float = 1e-6, **_unused):
    """GRPO: A_i = (r_i - mean_g r) / (std_g r + eps), std unbiased (ddof=1), per group (row).

    A group of size 1 has mean 0 and std 1, so A = r / (1 + eps). A zero-variance group (all rewards equal,
    G > 1) gets A = 0 exactly.
    """
    r, back = _to_numpy(rewards)
    if r.shape[1] == 1:
        return back(r / (1.0 + eps))
    mean = r.mean(axis=1, keepdims=True)
    std = r.std(axis=1, ddof=1, keepdims=True)
    adv = (r - mean) / (std + eps)
    adv[_constant_rows(r)] = 0.0
    return back(adv)


@register_advantage("dr_grpo")
def dr_grpo(rewards, **_unused):
    """Dr. GRPO (Liu et al. 2025): A_i = r_i - mean_g r, no division by the group std.

    A zero-variance group gets A = 0 exactly; a group of size 1 gets A = r (mean taken as 0, as in `grpo`).
    """
    r, back = _to_numpy(rewards)
    if r.shape[1] == 1:
        return back(r.copy())
    adv = r - r.mean(axis=1, keepdims=True)
    adv[_constant_rows(r)] = 0.0
    return back(adv)


def zero_variance_fraction(rewards, tol: float = 1e-8) -> float:
    """Fraction of groups whose rewards are all equal (max - min <= tol): those give zero GRPO advantage."""
    r, _ = _to_numpy(rewards)
    if r.shape[0] == 0:
        return 0.0
    return float(_constant_rows(r, tol).mean())
