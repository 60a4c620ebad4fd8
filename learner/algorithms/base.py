"""What every algorithm is: advantages from a batch of scored groups, and a per-token policy loss.

An algorithm is one module under learner/algorithms/ holding a subclass of `Algorithm`, registered by name:

    @register_algorithm
    class MyAlgorithm(Algorithm):
        name = "my_algorithm"            # algorithm.advantage: my_algorithm
        def advantages(self, groups, rewards): ...

The learner engine knows only this interface. Reward terms (GRPO-CARE's bonus) and token terms (GroundedPRM's
process advantages) compose with any algorithm through `learner.algorithms.pipeline`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from data.trajectory import TrajectoryGroup
from learner.losses import clipped_surrogate, masked_mean

ALGORITHMS: dict[str, type["Algorithm"]] = {}


def register_algorithm(cls: type["Algorithm"]) -> type["Algorithm"]:
    """Class decorator: make `cls` selectable as `algorithm.advantage: <cls.name>`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no `name`")
    if ALGORITHMS.get(cls.name, cls) is not cls:
        raise ValueError(f"algorithm {cls.name!r} is already registered by {ALGORITHMS[cls.name].__module__}")
    ALGORITHMS[cls.name] = cls
    return cls


def get_algorithm(name: str) -> type["Algorithm"]:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)} (algorithm.plugins imports "
                       f"modules that register more)") from None


def load_plugins(modules: list[str]) -> None:
    """Import each module so its `@register_algorithm` classes register (driver and every learner worker)."""
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ImportError(f"algorithm.plugins: cannot import {m!r}: {e}") from e


@dataclass
class Advantages:
    """What the advantage stage hands the loss. `sample` is [groups, G]; `token` adds a per-token part;
    `loss_inputs` are per-sample [groups, G] arrays that the algorithm's own `token_loss` reads back (the engine
    slices them per micro-batch without looking inside); `metrics` are batch scalars computed on the way."""
    sample: np.ndarray
    token: list[list[np.ndarray]] | None = None
    loss_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def reward_matrix(groups: list[TrajectoryGroup], component: str = "total") -> np.ndarray:
    """[groups, G] of one reward component (groups must share G)."""
    sizes = {g.size for g in groups}
    if len(sizes) != 1:
        raise ValueError(f"groups of different sizes in one batch: {sorted(sizes)}")
    missing = [g.group_id for g in groups if component not in g.rewards]
    if missing:
        raise ValueError(f"reward component {component!r} missing in groups {missing[:3]}")
    return np.stack([np.asarray(g.rewards[component], dtype=np.float64) for g in groups])


def constant_rows(r: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """[groups] bool: every reward in the row is equal (max - min <= tol)."""
    if r.shape[1] == 0:
        return np.ones(r.shape[0], dtype=bool)
    return (r.max(axis=1) - r.min(axis=1)) <= tol


def zero_variance_fraction(rewards: np.ndarray, tol: float = 1e-8) -> float:
    """Fraction of groups whose rewards are all equal: those give zero group-normalised advantage."""
    return float(constant_rows(np.asarray(rewards, dtype=np.float64), tol).mean()) if len(rewards) else 0.0


class Algorithm:
    """Subclasses set `name` (and `default_eps` if the paper's differs) and implement `advantages`.
    `token_loss` defaults to PPO's clipped surrogate; the engine aggregates it by `algorithm.loss_agg`."""
    name: ClassVar[str] = ""
    Config: ClassVar[type | None] = None   # a plugin's own options section (algorithm.options)
    default_eps: ClassVar[float] = 1e-6

    def __init__(self, cfg):
        """`cfg`: the whole `algorithm` section (learner.algorithms.config.AlgorithmConfig)."""
        self.cfg = cfg
        self.eps = cfg.adv_eps if cfg.adv_eps is not None else self.default_eps
        self.options = self.Config.model_validate(cfg.options) if self.Config is not None else None

    def advantages(self, groups: list[TrajectoryGroup], rewards: np.ndarray) -> Advantages:
        """rewards: [groups, G] (reward terms already added) -> Advantages."""
        raise NotImplementedError

    def token_loss(self, logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                   mask: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-token loss [B, R] (to be aggregated) and statistics over the valid tokens."""
        per_token, clipped = clipped_surrogate(logprobs, old_logprobs, advantages, self.cfg.clip_low,
                                               self.cfg.clip_high)
        return per_token, {"loss/clip_fraction": float(masked_mean(clipped.to(logprobs.dtype), mask))}
