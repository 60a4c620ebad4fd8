"""GRPO (Shao et al. 2024) and Dr. GRPO (Liu et al. 2025): group-relative advantages, PPO's clipped loss.

    GRPO:     A_i = (r_i - mean_g r) / (std_g r + eps)      std unbiased (ddof = 1), per prompt group g
    Dr. GRPO: A_i =  r_i - mean_g r                          (no std; pair it with loss_agg seq-mean-token-sum-norm)
    loss:     l_t = max(-A rho_t, -A clip(rho_t, 1 - clip_low, 1 + clip_high)),  rho_t = pi(o_t) / pi_old(o_t)

A zero-variance group gets A = 0 exactly; a group of one sample has mean 0 (GRPO: std 1), so A = r / (1 + eps).
"""
from __future__ import annotations

import numpy as np

from learner.algorithms.base import Advantages, Algorithm, constant_rows, register_algorithm


def group_normalized(rewards: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """GRPO advantages of a [groups, G] reward matrix."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must be [groups, G], got shape {r.shape}")
    if r.shape[1] == 1:
        return r / (1.0 + eps)
    adv = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, ddof=1, keepdims=True) + eps)
    adv[constant_rows(r)] = 0.0
    return adv


def mean_centred(rewards: np.ndarray) -> np.ndarray:
    """Dr. GRPO advantages of a [groups, G] reward matrix."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must be [groups, G], got shape {r.shape}")
    if r.shape[1] == 1:
        return r.copy()
    adv = r - r.mean(axis=1, keepdims=True)
    adv[constant_rows(r)] = 0.0
    return adv


@register_algorithm
class GRPO(Algorithm):
    name = "grpo"

    def advantages(self, groups, rewards) -> Advantages:
        return Advantages(group_normalized(rewards, self.eps))


@register_algorithm
class DrGRPO(Algorithm):
    name = "dr_grpo"

    def advantages(self, groups, rewards) -> Advantages:
        return Advantages(mean_centred(rewards))
