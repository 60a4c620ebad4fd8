"""Policy losses (torch): clipped surrogate, loss aggregation, low-variance KL, and their composition.

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


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_len: int | None = None) -> torch.Tensor:
    """Reduce a [B, T] per-token quantity l to a scalar, over valid tokens (mask m).

    token-mean:               sum_{b,t} m l / sum_{b,t} m                       (each token weighs the same)
    seq-mean-token-mean:      (1/B) sum_b [ sum_t m l / sum_t m ]              (each sequence weighs the same)
    seq-mean-token-sum-norm:  (1/B) sum_b [ sum_t m l / max_len ]              (Dr. GRPO, max_len = budget)

    B counts every sequence, including ones with no valid tokens (they contribute 0, never NaN). This matches
    the learner, which normalises the non-token modes by the number of sequences.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; valid: {list(AGG_MODES)}")
    m = mask.to(per_token.dtype)
    masked = per_token * m
    if mode == "token-mean":
        return masked.sum() / m.sum().clamp(min=1.0)
    n_seq = max(per_token.shape[0], 1)
    if mode == "seq-mean-token-mean":
        seq = masked.sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0)
        return seq.sum() / n_seq
    if max_len is None or max_len <= 0:
        raise ValueError("seq-mean-token-sum-norm needs max_len > 0 (the generation budget in tokens)")
    return (masked.sum(dim=-1) / float(max_len)).sum() / n_seq


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


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_low: float = 0.2, clip_high: float = 0.2, agg_mode: str = "token-mean",
                max_len: int | None = None, ref_logprobs: torch.Tensor | None = None,
                kl_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """loss = agg(l_clip) + kl_coef * agg(kl_k3)   (KL only when ref_logprobs is given and kl_coef > 0).

    Stats (python floats, over valid tokens): clip_fraction, approx_kl = mean 0.5 (logpi - logpi_old)^2,
    ratio_mean = mean rho, and kl = mean kl_k3 when the KL term is used.
    """
    old_logprobs = old_logprobs.to(logprobs.dtype)
    per_token, is_clipped = clipped_surrogate(logprobs, old_logprobs, advantages, clip_low, clip_high)
    loss = aggregate(per_token, mask, agg_mode, max_len)
    with torch.no_grad():
        log_ratio = logprobs.detach() - old_logprobs
        stats = {
            "clip_fraction": float(masked_mean(is_clipped.to(logprobs.dtype), mask)),
            "approx_kl": float(masked_mean(0.5 * log_ratio ** 2, mask)),
            "ratio_mean": float(masked_mean(torch.exp(log_ratio), mask)),
        }
    return add_kl_penalty(loss, stats, logprobs, ref_logprobs, mask, kl_coef, agg_mode, max_len)


def add_kl_penalty(loss: torch.Tensor, stats: dict, logprobs: torch.Tensor, ref_logprobs: torch.Tensor | None,
                   mask: torch.Tensor, kl_coef: float, agg_mode: str, max_len: int | None = None):
    """loss + kl_coef * agg(kl_k3), with stats["kl"] = mean kl_k3; unchanged without a reference or coef."""
    if ref_logprobs is None or kl_coef <= 0:
        return loss, stats
    kl = low_var_kl(logprobs, ref_logprobs.to(logprobs.dtype))
    stats["kl"] = float(masked_mean(kl.detach(), mask))
    return loss + kl_coef * aggregate(kl, mask, agg_mode, max_len), stats


# ---- dual-clip PPO and COPO (arXiv 2508.04138) ------------------------------------------------------------
COPO_MODES = ("only-soft", "soft-with-forced", "soft-with-zero", "only-global", "no-global", "only-forced",
              "only-zero", "only-soft-with-coef")


def _dual_clip(logprobs, old_logprobs, advantages, clip_low, clip_high, dual_clip):
    """(l [B, T], clipped [B, T] bool: PPO clip or the dual-clip cap is active, so the gradient is zero)."""
    if dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    adv = _per_token(advantages, logprobs)
    loss, is_clipped = clipped_surrogate(logprobs, old_logprobs, adv, clip_low, clip_high)
    cap = -dual_clip * adv
    capped = (adv < 0) & (cap < loss)
    return torch.where(capped, cap, loss), is_clipped | capped


def dual_clip_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                   clip_low: float = 0.2, clip_high: float = 0.2, dual_clip: float = 3.0) -> torch.Tensor:
    """Dual-clip PPO per token (Ye et al. 2020; COPO's l(A)):

        l = max(-A rho, -A clip(rho, 1 - clip_low, 1 + clip_high))
        l = min(l, -c A)   where A < 0          (c = dual_clip > 1)
    """
    return _dual_clip(logprobs, old_logprobs, advantages, clip_low, clip_high, dual_clip)[0]


def copo_local_weight(mode: str, gate, local_adv, reward):
    """Per-sample weight w of the local loss in ell = (1 - w) l(A^G) + w l(A^L), by COPO `global_flg` mode.

    only-soft: gate; soft-with-forced: gate 1[A^L != 0]; soft-with-zero: gate 1[r != 0]; only-global: 0;
    no-global: 1; only-forced: 1[A^L != 0]; only-zero: 1[r != 0]; only-soft-with-coef: gate (global term scaled).
    Works on torch tensors and numpy arrays alike (same shape in, same kind out).
    """
    if mode not in COPO_MODES:
        raise ValueError(f"unknown COPO mode {mode!r}; valid: {list(COPO_MODES)}")
    zero = gate * 0
    local_nz = (local_adv != 0) + zero      # bool -> the gate's float dtype
    reward_nz = (reward != 0) + zero
    return {
        "only-soft": lambda: gate,
        "only-soft-with-coef": lambda: gate,
        "soft-with-forced": lambda: gate * local_nz,
        "soft-with-zero": lambda: gate * reward_nz,
        "only-global": lambda: zero,
        "no-global": lambda: zero + 1,
        "only-forced": lambda: local_nz,
        "only-zero": lambda: reward_nz,
    }[mode]()


def copo_per_token_loss(logprobs, old_logprobs, local_adv, global_adv, gate, reward, mode: str = "soft-with-zero",
                        clip_low: float = 0.2, clip_high: float = 0.2, dual_clip: float = 3.0,
                        global_loss_coef: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ell = (1 - w) l(A^G) + w l(A^L) per token, l = dual_clip_loss, w = copo_local_weight(mode, ...);
    only-soft-with-coef: ell = global_loss_coef (1 - gate) l(A^G) + gate l(A^L).

    Returns (ell [B, T], w [B, T], clip indicator [B, T] = (1 - w) clipped_G + w clipped_L).
    """
    old_logprobs = old_logprobs.to(logprobs.dtype)
    def as_t(x):
        return torch.as_tensor(x, dtype=logprobs.dtype, device=logprobs.device).detach()
    local_adv, global_adv, gate, reward = as_t(local_adv), as_t(global_adv), as_t(gate), as_t(reward)
    w = _per_token(copo_local_weight(mode, gate, local_adv, reward), logprobs)
    l_local, clip_local = _dual_clip(logprobs, old_logprobs, local_adv, clip_low, clip_high, dual_clip)
    l_global, clip_global = _dual_clip(logprobs, old_logprobs, global_adv, clip_low, clip_high, dual_clip)
    g_coef = global_loss_coef if mode == "only-soft-with-coef" else 1.0
    ell = g_coef * (1.0 - w) * l_global + w * l_local
    clip = (1.0 - w) * clip_global.to(w.dtype) + w * clip_local.to(w.dtype)
    return ell, w, clip


def copo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, local_adv, global_adv, gate, mask: torch.Tensor,
              reward, mode: str = "soft-with-zero", clip_low: float = 0.2, clip_high: float = 0.2,
              dual_clip: float = 3.0, agg_mode: str = "seq-mean-token-mean", global_loss_coef: float = 1.0,
              max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """COPO loss = agg(ell) with ell from `copo_per_token_loss`; local_adv, global_adv, gate, reward are [B].

    Stats over valid tokens: global_loss_share = mean (1 - w), gate_mean = mean gate, clip_fraction = mean of
    the w-weighted clip indicator (1 - w) clipped_G + w clipped_L; approx_kl and ratio_mean as in policy_loss.
    """
    ell, w, clip = copo_per_token_loss(logprobs, old_logprobs, local_adv, global_adv, gate, reward, mode,
                                       clip_low, clip_high, dual_clip, global_loss_coef)
    loss = aggregate(ell, mask, agg_mode, max_len)
    with torch.no_grad():
        gate_t = _per_token(torch.as_tensor(gate, dtype=logprobs.dtype, device=logprobs.device), logprobs)
        log_ratio = logprobs.detach() - old_logprobs.to(logprobs.dtype)
        stats = {
            "global_loss_share": float(masked_mean(1.0 - w, mask)),
            "gate_mean": float(masked_mean(gate_t, mask)),
            "clip_fraction": float(masked_mean(clip, mask)),
            "approx_kl": float(masked_mean(0.5 * log_ratio ** 2, mask)),
            "ratio_mean": float(masked_mean(torch.exp(log_ratio), mask)),
        }
    return loss, stats
