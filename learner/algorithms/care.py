"""GRPO-CARE (arXiv 2506.16141): a consistency bonus from an EMA reference model, in place of the KL penalty.

Per prompt group g, with r^acc the accuracy reward and p_i the EMA reference's likelihood of sample i's answer
given its own reasoning (learner/reference.py):

    p_i   <- min(p_i, upper_bound)
    H      = {i : p_i is known, acc_i > 0.1 and acc_i >= mean_g acc}        (the high-accuracy set)
    tau    = mean_{i in H} p_i
    r^c_i  = bonus_coef * acc_i   if i in H and p_i >= tau - margin,  else 0
    A      = GRPO(r + r^c)  with eps 1e-4

A sample whose answer span cannot be found has no likelihood (NaN): it is not in H, not in tau, gets no bonus,
and is counted in `care/no_span_rate`; the group mean of acc still counts it (its accuracy is known). An empty H
gives the group no bonus. `algorithm.care.enabled: true` adds the same bonus under any other algorithm (e.g.
COPO): CARE shapes the reward, the algorithm turns it into advantages.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from data.trajectory import TrajectoryGroup
from learner.algorithms.base import reward_matrix, register_algorithm
from learner.algorithms.grpo import GRPO
from learner.config import Section

_TIE_TOL = 1e-12  # ties (acc_i == mean acc, p_i == tau) must not be lost to float rounding of the means


class CareConfig(Section):
    enabled: bool | None = None           # None: on iff algorithm.advantage == care; true adds the bonus to any
    bonus_coef: float = 0.5               # lambda: bonus = lambda * accuracy reward
    margin: float = 0.0                   # confident if p_i >= tau - margin (0 or 0.01 in the paper)
    upper_bound: float = 0.95             # p_i <- min(p_i, upper_bound)
    ema_decay: float = Field(0.995, ge=0.0, le=1.0)
    ema_every: int = Field(10, ge=1)      # optimizer steps between EMA updates
    keep_kl: bool = False                 # CARE replaces KL; true keeps algorithm.kl_coef as well
    batch_size: int = Field(16, ge=1)     # sequences per reference forward pass
    num_cpus: float = 1.0
    num_gpus: float = 0.0


def care_bonus(accuracy, answer_likelihood, coef: float = 0.5, margin: float = 0.0,
               upper_bound: float = 0.95) -> np.ndarray:
    """The bonus r^c [groups, G] from accuracy and likelihood matrices [groups, G] (NaN = no likelihood)."""
    acc = np.asarray(accuracy, dtype=np.float64)
    p = np.asarray(answer_likelihood, dtype=np.float64)
    if p.shape != acc.shape or acc.ndim != 2:
        raise ValueError(f"accuracy {acc.shape} and answer_likelihood {p.shape} must be the same [groups, G]")
    if acc.shape[1] == 0:
        return np.zeros_like(acc)
    known = np.isfinite(p)
    p = np.minimum(np.where(known, p, 0.0), upper_bound)
    high = known & (acc > 0.1) & (acc >= acc.mean(axis=1, keepdims=True) - _TIE_TOL)
    n_high = high.sum(axis=1, keepdims=True)
    tau = np.where(high, p, 0.0).sum(axis=1, keepdims=True) / np.maximum(n_high, 1)
    confident = p >= tau - margin - _TIE_TOL
    return np.where(high & confident, coef * acc, 0.0)


def likelihood_matrix(groups: list[TrajectoryGroup]) -> np.ndarray:
    """[groups, G] EMA-reference answer likelihoods; every group must have been through the reference."""
    missing = [g.group_id for g in groups if g.answer_likelihood is None]
    if missing:
        raise ValueError(f"CARE is on but groups {missing[:3]} have no reference answer likelihood")
    return np.stack([np.asarray(g.answer_likelihood, dtype=np.float64) for g in groups])


class CareBonus:
    """The reward term: (r^c [groups, G], metrics). Added to `total` before any algorithm's advantages."""

    def __init__(self, cfg: CareConfig):
        self.cfg = cfg

    def __call__(self, groups: list[TrajectoryGroup]) -> tuple[np.ndarray, dict[str, float]]:
        p = likelihood_matrix(groups)
        bonus = care_bonus(reward_matrix(groups, "accuracy_reward"), p, self.cfg.bonus_coef, self.cfg.margin,
                           self.cfg.upper_bound)
        known = np.isfinite(p)
        metrics = {"care/bonus_rate": float((bonus > 0).mean()), "care/bonus_mean": float(bonus.mean()),
                   "care/no_span_rate": float(1.0 - known.mean())}
        if known.any():     # a batch without any answer span has no likelihood to average (not a 0)
            metrics["care/answer_likelihood_mean"] = float(p[known].mean())
        if all("consistent" in g.rewards for g in groups):   # reasoning implies the answer: the paper's headline
            metrics["care/consistency_rate"] = float(reward_matrix(groups, "consistent").mean())
        return bonus, metrics


@register_algorithm
class CARE(GRPO):
    """GRPO over r + r^c; the pipeline adds the CareBonus term whenever algorithm.advantage is care."""
    name = "care"
    default_eps = 1e-4
