"""Policy-loss pieces every algorithm shares (torch): the clipped surrogate, loss aggregation, low-variance KL.

Shapes: logprobs / old_logprobs / ref_logprobs / mask are [B, T] (T = response positions, right-padded);
advantages are [B] (one per sequence, broadcast over tokens) or [B, T]. `mask` is 1 (or True) on valid response
tokens and 0 on padding.
"""
from __future__ import annotations

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def _per_token(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] or [B, T] advantages -> [B, T] in the dtype/device of `like`."""
    adv = torch.as_tensor(advantages, dtype=like.dtype, device=like.device)
    if adv.dim() == 1:
        adv = adv[:, None]
    return adv.expand_as(like)


def clipped_surrogate(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                      clip_low: float = 0.2, clip_high: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate per token.

        rho = exp(logpi - logpi_old)
        l   = max(-A * rho, -A * clip(rho, 1 - clip_low, 1 + clip_high))

    Returns (l [B, T], clipped [B, T] bool: where the clipped branch is strictly larger, i.e. the gradient is
    zero because clipping is active). On ties the unclipped branch is taken, so at rho = 1 the gradient is -A.
    """
    adv = _per_token(advantages, logprobs)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    is_clipped = clipped > unclipped
    return torch.where(is_clipped, clipped, unclipped), is_clipped


def aggregate_sum(per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_len: int | None = None) -> torch.Tensor:
    """The numerator of `aggregate`: token-mean -> sum m l; the seq-mean modes -> the sum over sequences of
    their per-sequence value. The learner divides it by the normaliser of the whole mini-batch (its valid tokens,
    or its sequences), so any split into micro-batches and ranks gives the same gradient."""
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; valid: {list(AGG_MODES)}")
    m = mask.to(per_token.dtype)
    masked = per_token * m
    if mode == "token-mean":
        return masked.sum()
    if mode == "seq-mean-token-mean":
        return (masked.sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0)).sum()
    if max_len is None or max_len <= 0:
        raise ValueError("seq-mean-token-sum-norm needs max_len > 0 (the generation budget in tokens)")
    return (masked.sum(dim=-1) / float(max_len)).sum()


def aggregate_normaliser(mask: torch.Tensor, mode: str) -> float:
    """What `aggregate_sum` is divided by: valid tokens for token-mean, sequences otherwise."""
    return float(mask.sum()) if mode == "token-mean" else float(mask.shape[0])


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_len: int | None = None) -> torch.Tensor:
    """Reduce a [B, T] per-token quantity l to a scalar, over valid tokens (mask m).

    token-mean:               sum_{b,t} m l / sum_{b,t} m                       (each token weighs the same)
    seq-mean-token-mean:      (1/B) sum_b [ sum_t m l / sum_t m ]              (each sequence weighs the same)
    seq-mean-token-sum-norm:  (1/B) sum_b [ sum_t m l / max_len ]              (Dr. GRPO, max_len = budget)

    B counts every sequence, including ones with no valid tokens (they contribute 0, never NaN).
    """
    return aggregate_sum(per_token, mask, mode, max_len) / max(aggregate_normaliser(mask, mode), 1.0)


def low_var_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || pi_ref) per token (Schulman), always >= 0 before clamping:

        d  = logpi_ref - logpi
        kl = exp(d) - d - 1,  clamped to [-10, 10]

    d is clamped to [-20, 20] first so exp cannot overflow.
    """
    d = torch.clamp(ref_logprobs - logprobs, -20.0, 20.0)
    return torch.clamp(torch.exp(d) - d - 1.0, -10.0, 10.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(m x) / sum(m); 0 when there are no valid tokens."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)
