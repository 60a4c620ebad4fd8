"""Advantage estimators: rewards [groups, G] -> advantages [groups, G].

Each estimator is one small pure function registered by name:

    @register_advantage("my_estimator")
    def my_estimator(rewards, **kwargs): ...

and looked up with `get_advantage_estimator("my_estimator")`. The registry lives in this module, so a Ray worker
that imports `learner.advantages` sees the built-in estimators (look names up inside the worker).

Estimators accept and ignore keyword arguments they do not use (the learner passes every input it has, e.g.
`eps`, `accuracy`, `answers` and the care/copo config knobs, to whichever estimator is configured). They accept a
numpy array or a torch tensor and return the same kind; one that produces more than per-sample advantages (COPO)
returns an `Advantages` record.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable

import numpy as np

from rewards.canonical import canonical_answer  # kept importable from here; see rewards/canonical.py

try:  # torch is optional here: the math is numpy
    import torch
except ImportError:  # pragma: no cover - torch is a learner dependency
    torch = None

AdvantageFn = Callable[..., "np.ndarray"]
ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {}


@dataclass
class Advantages:
    """What an estimator hands the loss: per-sample local advantages and, for COPO, per-group extras."""
    local: np.ndarray                      # [groups, G]
    global_adv: np.ndarray | None = None   # [groups] COPO A^G
    gate: np.ndarray | None = None         # [groups] COPO w = sigmoid(k (H - b))
    entropy: np.ndarray | None = None      # [groups] answer entropy H, bits
    bonus: np.ndarray | None = None        # [groups, G] CARE consistency bonus, when CARE is on
    token: list[list[np.ndarray]] | None = None   # [groups][G] -> [T] process advantages added per token


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


# ---- GRPO-CARE (arXiv 2506.16141) -------------------------------------------------------------------------
_TIE_TOL = 1e-12  # ties (acc_i == mean acc, p_i == tau) must not be lost to float rounding of the means


def care_bonus(accuracy, answer_likelihood, coef: float = 0.5, margin: float = 0.0, upper_bound: float = 0.95):
    """CARE consistency bonus, per prompt group (row), never across groups:

        p_i <- min(p_i, upper_bound)
        H    = {i : acc_i > 0.1 and acc_i >= mean_g acc}
        tau  = mean_{i in H} p_i
        r^c_i = coef * acc_i  if i in H and p_i >= tau - margin,  else 0

    An empty H gives the whole group zero bonus. accuracy, answer_likelihood: [groups, G] -> bonus [groups, G].
    Ties (acc_i == mean, p_i == tau) qualify; comparisons allow 1e-12 of float rounding.
    """
    acc, back = _to_numpy(accuracy)
    p, _ = _to_numpy(answer_likelihood)
    if p.shape != acc.shape:
        raise ValueError(f"accuracy {acc.shape} and answer_likelihood {p.shape} differ in shape")
    if acc.shape[1] == 0:
        return back(np.zeros_like(acc))
    p = np.minimum(p, upper_bound)
    high = (acc > 0.1) & (acc >= acc.mean(axis=1, keepdims=True) - _TIE_TOL)
    n_high = high.sum(axis=1, keepdims=True)
    tau = np.where(high, p, 0.0).sum(axis=1, keepdims=True) / np.maximum(n_high, 1)
    confident = p >= tau - margin - _TIE_TOL
    return back(np.where(high & confident & (n_high > 0), coef * acc, 0.0))


@register_advantage("care")
def care_advantage(rewards, accuracy=None, answer_likelihood=None, bonus_coef: float = 0.5, margin: float = 0.0,
                   upper_bound: float = 0.95, eps: float = 1e-4, **_unused):
    """GRPO-CARE: A = grpo(r^b + r^c) with r^b = `rewards` (accuracy + format) and r^c = care_bonus(...).

    Needs the per-rollout `accuracy` (reward) and reference `answer_likelihood` ([groups, G]) as keyword
    arguments; the paper's eps is 1e-4 (unbiased std per group, as in `grpo`).
    """
    if accuracy is None or answer_likelihood is None:
        raise ValueError("the 'care' estimator needs accuracy=[groups, G] and answer_likelihood=[groups, G]")
    r, back = _to_numpy(rewards)
    bonus = care_bonus(_to_numpy(accuracy)[0], _to_numpy(answer_likelihood)[0], bonus_coef, margin, upper_bound)
    return back(group_normalized(r + bonus, eps=eps))


# ---- COPO (arXiv 2508.04138) ------------------------------------------------------------------------------
def answer_entropy(answers, canonical: bool = True) -> float:
    """H = -sum_c p_c log2 p_c over the canonical answer classes of one group (bits; "" is its own class).

    canonical=False: the strings already are classes (the reward actor canonicalises in its sandboxed child,
    so the learner never runs SymPy's parser on model text).
    """
    answers = list(answers)
    if not answers:
        return 0.0
    classes = (canonical_answer(a) for a in answers) if canonical else (str(a) for a in answers)
    counts = np.array(list(collections.Counter(classes).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(max(-(p * np.log2(p)).sum(), 0.0))


def copo_global_advantage(correct, answers, entropy_discount: bool = False, eps: float = 1e-6,
                          canonical: bool = True):
    """COPO global advantage, one value per prompt group:

        H_g   = answer_entropy(answers_g)                    (bits)
        kappa = 1 - lambda_H * H_g, lambda_H = (1 - 1/n) / log2 n   if entropy_discount (n = G; G = 1 -> 1)
                1                                             otherwise (the released run)
        R_g   = mean_i correct_i * kappa
        A^G_g = (R_g - mean_batch R) / (std_batch R + eps)    (unbiased std over groups)

    A constant batch, including a batch of one group, gives A^G = 0 exactly (R_g - mean is 0; no std needed).
    correct: [groups, G]; answers: [groups][G] strings. Returns (A^G [groups], H [groups]), same kind as correct.
    """
    c, back = _to_numpy(correct)
    if len(answers) != c.shape[0] or any(len(a) != c.shape[1] for a in answers):
        raise ValueError(f"answers must be [groups][G] matching correct {c.shape}")
    n = c.shape[1]
    ent = np.array([answer_entropy(a, canonical) for a in answers], dtype=np.float64)
    kappa = np.ones_like(ent)
    if entropy_discount and n > 1:
        kappa = 1.0 - (1.0 - 1.0 / n) / np.log2(n) * ent
    r_g = c.mean(axis=1) * kappa if n > 0 else np.zeros(c.shape[0])
    if r_g.size < 2 or np.ptp(r_g) == 0.0:
        return back(np.zeros_like(r_g)), back(ent)
    return back((r_g - r_g.mean()) / (r_g.std(ddof=1) + eps)), back(ent)


def copo_gate(entropy, k: float = 5.0, b: float = 1.0):
    """COPO blend weight on the local loss: w = sigmoid(k * (H - b)). Float, numpy or torch in -> same kind out."""
    if torch is not None and isinstance(entropy, torch.Tensor):
        return torch.sigmoid(k * (entropy - b))
    z = k * (np.asarray(entropy, dtype=np.float64) - b)
    w = np.exp(-np.logaddexp(0.0, -z))  # = 1 / (1 + exp(-z)), without overflow
    return float(w) if np.ndim(entropy) == 0 and not isinstance(entropy, np.ndarray) else w


@register_advantage("copo")
def copo_advantage(rewards, correct=None, answers=None, entropy_discount: bool = False, gate_k: float = 5.0,
                   gate_b: float = 1.0, eps: float = 1e-6, canonical: bool = True, **_unused) -> Advantages:
    """COPO: local A^L = grpo(rewards) per group; global A^G = copo_global_advantage(correct, answers) across the
    batch; gate w = copo_gate(H, k, b). The loss (`learner.losses.copo_loss`) blends l(A^G) and l(A^L) by w.

    `correct` ([groups, G], 0/1) and `answers` ([groups][G] strings) are keyword arguments.
    """
    if correct is None or answers is None:
        raise ValueError("the 'copo' estimator needs correct=[groups, G] and answers=[groups][G]")
    local = np.asarray(group_normalized(_to_numpy(rewards)[0], eps=eps))
    global_adv, ent = copo_global_advantage(_to_numpy(correct)[0], answers, entropy_discount, eps, canonical)
    return Advantages(local, np.asarray(global_adv), np.asarray(copo_gate(np.asarray(ent), gate_k, gate_b)),
                      np.asarray(ent))


# ---- process supervision (GroundedPRM step scores as token-placed rewards) ----------------------------------
def process_advantages(step_scores: list[list[float]], step_tokens: list[list[int]], lengths: list[int],
                       eps: float = 1e-6) -> list[np.ndarray]:
    """Token advantages of one group from its step rewards (DeepSeekMath §4.1.3, process supervision):

        r~_j = (r_j - mean(R)) / (std(R) + eps)      R = every step reward of every sample in the group
        A_t  = sum_{j : index(j) >= t} r~_j           index(j) = token that ends step j

    so a token is credited with the normalised rewards of its own step and every later one. Returns one [T_i]
    array per sample (T_i = lengths[i]); a group whose step rewards are all equal gets zeros.
    """
    flat = np.asarray([s for scores in step_scores for s in scores], dtype=np.float64)
    out = []
    mean = flat.mean() if flat.size else 0.0
    std = flat.std() if flat.size > 1 else 0.0
    for scores, tokens, n in zip(step_scores, step_tokens, lengths):
        adv = np.zeros(n, dtype=np.float64)
        if std > 0:
            for s, k in zip(scores, tokens):
                adv[:min(k, n - 1) + 1] += (s - mean) / (std + eps)   # tokens 0..index(j) see step j's reward
        out.append(adv)
    return out
