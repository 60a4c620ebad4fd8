"""COPO (arXiv 2508.04138): a global, batch-level consistency advantage blended with GRPO's local one.

Per prompt group g with G samples, answer classes c_i and correctness y_i = 1[accuracy_i > 0]:

    H_g   = -sum_c p_c log2 p_c                      answer entropy over the group's classes (bits)
    kappa = 1 - lambda_H H_g, lambda_H = (1 - 1/G) / log2 G   if entropy_discount, else 1 (the released run)
    R_g   = kappa * mean_i y_i
    A^G_g = (R_g - mean_batch R) / (std_batch R + eps)         unbiased std over the batch's groups
    A^L_i = GRPO(r)_i
    w_i   = gate weight by mode (soft-with-zero: sigmoid(k (H_g - b)) * 1[y_i != 0])
    l_t   = (1 - w_i) l(A^G_g) + w_i l(A^L_i),   l = dual-clip PPO: min(max(-A rho, -A clip(rho)), -c A) for A < 0

Answer classes (`answer_classes`): `canonical` (default, waypoint's decision) takes the reward child's SymPy
canonical form and puts every unreadable answer in one class ""; `released` takes the raw extracted strings, as
the released code does, where each unreadable answer is a class of its own. The default is canonical because
with released classes a group of junk answers has maximal entropy, which opens the gate onto the local loss for
exactly the groups with nothing to learn from ("1/2" and "0.5" also count as two answers there).
"""
from __future__ import annotations

import collections
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from data.trajectory import TrajectoryGroup
from learner.algorithms.base import Advantages, Algorithm, constant_rows, register_algorithm, reward_matrix
from learner.algorithms.grpo import group_normalized
from learner.config import Section
from learner.losses import clipped_surrogate, masked_mean

COPO_MODES = ("only-soft", "soft-with-forced", "soft-with-zero", "only-global", "no-global", "only-forced",
              "only-zero", "only-soft-with-coef")


class CopoConfig(Section):
    mode: Literal[COPO_MODES] = "soft-with-zero"  # the released global_flg
    gate_k: float = 5.0                   # w = sigmoid(k (H - b))
    gate_b: float = 1.0
    entropy_discount: bool = False        # reward_coef_flg: R_g = pass rate * (1 - lambda_H H)
    dual_clip: float = Field(3.0, gt=1.0)
    global_loss_coef: float = 1.0         # only-soft-with-coef
    answer_classes: Literal["canonical", "released"] = "canonical"


def answer_entropy(classes) -> float:
    """H = -sum_c p_c log2 p_c over one group's class labels (bits)."""
    classes = list(classes)
    if not classes:
        return 0.0
    counts = np.array(list(collections.Counter(classes).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(max(-(p * np.log2(p)).sum(), 0.0))


def answer_class_labels(groups: list[TrajectoryGroup], which: str) -> list[list]:
    """[groups][G] class labels. released: raw strings, each unreadable (None) answer a class of its own."""
    field = "answer_classes" if which == "canonical" else "answer_raw"
    missing = [g.group_id for g in groups if len(getattr(g, field)) != g.size]
    if missing:
        raise ValueError(f"copo.answer_classes={which} needs the reward actor's {field} of groups {missing[:3]}")
    if which == "canonical":
        return [list(g.answer_classes) for g in groups]
    return [[a if a is not None else ("unreadable", i) for i, a in enumerate(g.answer_raw)] for g in groups]


def copo_global_advantage(correct, classes, entropy_discount: bool = False,
                          eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(A^G [groups], H [groups]) from correct [groups, G] (0/1) and class labels [groups][G].
    A constant batch, including a batch of one group, gives A^G = 0 exactly."""
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2 or len(classes) != c.shape[0] or any(len(a) != c.shape[1] for a in classes):
        raise ValueError(f"classes must be [groups][G] matching correct {c.shape}")
    n = c.shape[1]
    ent = np.array([answer_entropy(a) for a in classes], dtype=np.float64)
    kappa = 1.0 - (1.0 - 1.0 / n) / np.log2(n) * ent if entropy_discount and n > 1 else np.ones_like(ent)
    r_g = c.mean(axis=1) * kappa if n > 0 else np.zeros(c.shape[0])
    if r_g.size < 2 or np.ptp(r_g) == 0.0:
        return np.zeros_like(r_g), ent
    return (r_g - r_g.mean()) / (r_g.std(ddof=1) + eps), ent


def copo_gate(entropy, k: float = 5.0, b: float = 1.0) -> np.ndarray:
    """w = sigmoid(k (H - b)), without overflow."""
    z = k * (np.asarray(entropy, dtype=np.float64) - b)
    return np.exp(-np.logaddexp(0.0, -z))


def copo_local_weight(mode: str, gate, local_adv, correct):
    """Weight w of the local loss by mode (numpy or torch, same shapes): only-soft / only-soft-with-coef: gate;
    soft-with-forced: gate 1[A^L != 0]; soft-with-zero: gate 1[y != 0]; only-global: 0; no-global: 1;
    only-forced: 1[A^L != 0]; only-zero: 1[y != 0]."""
    if mode not in COPO_MODES:
        raise ValueError(f"unknown COPO mode {mode!r}; valid: {list(COPO_MODES)}")
    zero = gate * 0
    local_nz = (local_adv != 0) + zero      # bool -> the gate's float dtype
    correct_nz = (correct != 0) + zero
    return {"only-soft": gate, "only-soft-with-coef": gate, "soft-with-forced": gate * local_nz,
            "soft-with-zero": gate * correct_nz, "only-global": zero, "no-global": zero + 1,
            "only-forced": local_nz, "only-zero": correct_nz}[mode]


def dual_clip(logprobs, old_logprobs, adv, clip_low: float, clip_high: float, c: float):
    """Dual-clip PPO per token (Ye et al. 2020): (l [B, T], no-gradient indicator [B, T])."""
    if c <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {c}")
    adv = adv if adv.dim() == logprobs.dim() else adv.unsqueeze(-1).expand_as(logprobs)
    loss, is_clipped = clipped_surrogate(logprobs, old_logprobs, adv, clip_low, clip_high)
    cap = -c * adv
    capped = (adv < 0) & (cap < loss)
    return torch.where(capped, cap, loss), is_clipped | capped


@register_algorithm
class COPO(Algorithm):
    name = "copo"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.copo = cfg.copo

    def advantages(self, groups, rewards) -> Advantages:
        c = self.copo
        correct = (reward_matrix(groups, "accuracy") > 0).astype(np.float64)
        local = group_normalized(rewards, self.eps)
        global_adv, ent = copo_global_advantage(correct, answer_class_labels(groups, c.answer_classes),
                                                c.entropy_discount, self.eps)
        gate = np.broadcast_to(copo_gate(ent, c.gate_k, c.gate_b)[:, None], local.shape)
        inputs = {"global_adv": np.broadcast_to(global_adv[:, None], local.shape), "gate": gate, "correct": correct}
        global_weight = 1.0 - copo_local_weight(c.mode, gate, local, correct)
        zero_var = constant_rows(np.asarray(rewards), 1e-8)
        with_grad = zero_var & (np.abs(global_adv) > 0) & (global_weight.max(axis=1) > 0)
        metrics = {"copo/answer_entropy_mean": float(ent.mean()), "copo/global_adv_std": float(global_adv.std()),
                   "copo/zero_variance_with_gradient": float(with_grad.sum() / max(zero_var.sum(), 1))}
        return Advantages(local, loss_inputs=inputs, metrics=metrics)

    def token_loss(self, logprobs, old_logprobs, advantages, mask, inputs):
        c, a = self.copo, self.cfg
        gate, global_adv = inputs["gate"], inputs["global_adv"]
        w = copo_local_weight(c.mode, gate, advantages if advantages.dim() == 1 else advantages[:, 0],
                              inputs["correct"])[:, None].expand_as(logprobs)
        l_local, clip_local = dual_clip(logprobs, old_logprobs, advantages, a.clip_low, a.clip_high, c.dual_clip)
        l_global, clip_global = dual_clip(logprobs, old_logprobs, global_adv, a.clip_low, a.clip_high, c.dual_clip)
        g_coef = c.global_loss_coef if c.mode == "only-soft-with-coef" else 1.0
        per_token = g_coef * (1.0 - w) * l_global + w * l_local
        with torch.no_grad():
            clip = (1.0 - w) * clip_global.to(w.dtype) + w * clip_local.to(w.dtype)
            stats = {"copo/global_loss_share": float(masked_mean(1.0 - w, mask)),
                     "copo/gate_mean": float(masked_mean(gate[:, None].expand_as(logprobs), mask)),
                     "loss/clip_fraction": float(masked_mean(clip, mask))}
        return per_token, stats
