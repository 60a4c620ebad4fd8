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

import collections
import functools
import re
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
def care_advantage(rewards, accuracy=None, answer_likelihood=None, bonus_coef: float = 0.5,
                   consistency_margin: float = 0.0, confidence_upper_bound: float = 0.95, eps: float = 1e-4,
                   **_unused):
    """GRPO-CARE: A = grpo(r^b + r^c) with r^b = `rewards` (accuracy + format) and r^c = care_bonus(...).

    Needs the per-rollout `accuracy` and reference `answer_likelihood` ([groups, G]) as keyword arguments; the
    paper's eps is 1e-4 (unbiased std per group, as in `grpo`).
    """
    if accuracy is None or answer_likelihood is None:
        raise ValueError("the 'care' estimator needs accuracy=[groups, G] and answer_likelihood=[groups, G]")
    r, back = _to_numpy(rewards)
    bonus = care_bonus(_to_numpy(accuracy)[0], _to_numpy(answer_likelihood)[0], bonus_coef, consistency_margin,
                       confidence_upper_bound)
    return back(group_normalized(r + bonus, eps=eps))


# ---- COPO (arXiv 2508.04138) ------------------------------------------------------------------------------
_SYMPY_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz+-*/^(). ")
_SYMPY_MAX_LEN = 64
_MAX_EXPONENT = 1000


def _sympy_namespace() -> dict:
    """The only names parse_expr may evaluate: no builtins, just the constructors its transformations emit."""
    import sympy
    names = ("Symbol", "Integer", "Float", "Rational", "Function", "Add", "Mul", "Pow", "And", "Or", "Not", "I")
    ns = {n: getattr(sympy, n) for n in names}
    ns["__builtins__"] = {}
    return ns


def _safe_to_evaluate(text: str) -> bool:
    """Only short arithmetic strings; at most one power operator and no scientific notation (no huge numbers)."""
    if not text or len(text) > _SYMPY_MAX_LEN or not set(text) <= _SYMPY_CHARS:
        return False
    if text.count("^") + text.count("**") > 1:
        return False
    return re.search(r"\d\.?e", text) is None


@functools.lru_cache(maxsize=65536)
def canonical_answer(answer: str) -> str:
    """Answer class for the COPO entropy: strip + lower-case, then SymPy's canonical form where the string is a
    short parsable expression ("0.5", "1/2" -> "1/2"; "x+1", "1 + x" -> "x + 1"; "2*x/4" -> "x/2"), else the
    stripped string. Only <= 64 chars of [0-9a-z+-*/^(). ], one power operator, exponents <= 1000, no builtins."""
    text = str(answer).strip().lower()
    if not _safe_to_evaluate(text):
        return text
    try:
        import sympy
        from sympy.parsing.sympy_parser import (
            convert_xor,
            parse_expr,
            standard_transformations,
        )
        transforms = standard_transformations + (convert_xor,)
        lazy = parse_expr(text, local_dict={}, global_dict=_sympy_namespace(), transformations=transforms,
                          evaluate=False)
        for pw in lazy.atoms(sympy.Pow):  # refuse numerically huge exponents before evaluating anything
            if pw.exp.is_number and abs(complex(pw.exp.doit())) > _MAX_EXPONENT:
                return text
        expr = parse_expr(text, local_dict={}, global_dict=_sympy_namespace(), transformations=transforms,
                          evaluate=True)
        if not isinstance(expr, sympy.Basic):
            return text
        # evaluate=True already orders terms and folds exact arithmetic; floats become simple rationals
        # ("0.5" -> 1/2). sympy.simplify is not used: it is unbounded in time and memory on e.g. (x+1)^1000.
        if expr.atoms(sympy.Float):
            expr = sympy.nsimplify(expr)
        return str(expr)
    except Exception:  # noqa: BLE001 - anything SymPy cannot handle is its own exact-string class
        return text


def answer_entropy(answers) -> float:
    """H = -sum_c p_c log2 p_c over the canonical answer classes of one group (bits; "" is its own class)."""
    answers = list(answers)
    if not answers:
        return 0.0
    counts = np.array(list(collections.Counter(canonical_answer(a) for a in answers).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(max(-(p * np.log2(p)).sum(), 0.0))


def copo_global_advantage(correct, answers, entropy_discount: bool = False, eps: float = 1e-6):
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
    ent = np.array([answer_entropy(a) for a in answers], dtype=np.float64)
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
