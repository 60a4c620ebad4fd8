"""From scored TrajectoryGroups and their advantages to the learner's rows, segments and micro-batch tensors.

A row is one sampled response. Rows of one group stay next to each other, so a micro-batch is a few segments
(a prompt and some of its responses) and the shared-prefix forward encodes each prompt once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data.trajectory import TrajectoryGroup
from learner.algorithms.base import Advantages, reward_matrix, zero_variance_fraction
from learner.forward import Segment, response_mask


@dataclass
class SampleRow:
    group: TrajectoryGroup
    index: int
    advantage: float
    token_advantage: np.ndarray | None      # [T] added to `advantage` per token (process advantages)
    inputs: dict[str, float]                # the algorithm's per-sample loss inputs
    old_logprobs: np.ndarray                # [T] the ratio's denominator (behaviour or recomputed)

    @property
    def token_ids(self) -> list[int]:
        return self.group.samples[self.index].token_ids


def sample_rows(groups: list[TrajectoryGroup], adv: Advantages) -> list[SampleRow]:
    rows = []
    for gi, g in enumerate(groups):
        for i, s in enumerate(g.samples):
            rows.append(SampleRow(g, i, float(adv.sample[gi, i]), adv.token[gi][i] if adv.token is not None else None,
                                  {k: float(v[gi, i]) for k, v in adv.loss_inputs.items()},
                                  np.asarray(s.logprobs, dtype=np.float32)))
    return rows


def segments(rows: list[SampleRow]) -> list[Segment]:
    """Consecutive rows of one group -> one Segment (its prompt once, those responses)."""
    out: list[Segment] = []
    last = None
    for r in rows:
        if r.group is not last:
            out.append(Segment(r.group.prompt_ids, [], r.group.mm_inputs))
            last = r.group
        out[-1].responses.append(r.token_ids)
    return out


@dataclass
class MicroBatch:
    segments: list[Segment]
    mask: torch.Tensor            # [B, R] 1 on response tokens
    old_logprobs: torch.Tensor    # [B, R]
    advantages: torch.Tensor      # [B], or [B, R] with token terms
    inputs: dict[str, torch.Tensor]   # the algorithm's [B] loss inputs


def micro_batch(rows: list[SampleRow], device) -> MicroBatch:
    segs = segments(rows)
    mask = response_mask(segs)                  # the same [B, R] the forward pass zeroes log-probs with
    r = mask.shape[1]
    old = torch.zeros_like(mask)
    for k, x in enumerate(rows):
        n = len(x.token_ids)
        old[k, :n] = torch.as_tensor(x.old_logprobs[:n])
    adv = torch.tensor([x.advantage for x in rows], dtype=torch.float32)
    if any(x.token_advantage is not None for x in rows):
        adv = adv[:, None].repeat(1, r)
        for k, x in enumerate(rows):
            if x.token_advantage is not None and len(x.token_advantage):
                adv[k, :len(x.token_advantage)] += torch.as_tensor(x.token_advantage, dtype=torch.float32)
    names = rows[0].inputs.keys() if rows else ()
    inputs = {n: torch.tensor([x.inputs[n] for x in rows], dtype=torch.float32, device=device) for n in names}
    return MicroBatch(segs, mask.to(device), old.to(device), adv.to(device), inputs)


def mini_normaliser(rows: list[SampleRow], loss_agg: str) -> float:
    """The whole mini-batch's loss normaliser (over every rank's rows): valid tokens for token-mean, else
    sequences (learner.losses.aggregate_sum's numerator is divided by it)."""
    return float(sum(len(r.token_ids) for r in rows)) if loss_agg == "token-mean" else float(len(rows))


def batch_stats(groups: list[TrajectoryGroup], adv: Advantages, learner_version: int) -> dict:
    """Scalars the controller logs for a consumed batch, whatever the algorithm."""
    stats: dict[str, float] = {f"reward/{c}": float(reward_matrix(groups, c).mean()) for c in groups[0].rewards}
    stats["adv/mean"] = float(adv.sample.mean())
    stats["adv/std"] = float(adv.sample.std())
    stats["zero_variance_fraction"] = zero_variance_fraction(reward_matrix(groups))
    lags = [learner_version - g.version for g in groups]
    stats["staleness/mean"] = float(np.mean(lags))
    stats["staleness/max"] = float(np.max(lags))
    lens = [len(s.token_ids) for g in groups for s in g.samples]
    stats["response/len_mean"] = float(np.mean(lens))
    stats["response/stop_fraction"] = float(np.mean([s.finish_reason == "stop" for g in groups for s in g.samples]))
    stats["response_tokens"] = float(np.sum(lens))
    stats["reward_failures"] = float(sum(1 for g in groups for f in g.reward_failures if f))
    return {**stats, **adv.metrics}
