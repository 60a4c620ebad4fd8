"""From scored TrajectoryGroups to advantages and padded tensors.

Layout of one sequence: [left pad | prompt | response | right pad]. Every prompt is left-padded to the same
length P, so the logits that predict response token t sit at column P - 1 + t for every row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data.trajectory import TrajectoryGroup
from learner.advantages import get_advantage_estimator, zero_variance_fraction


def reward_matrix(groups: list[TrajectoryGroup], component: str = "total") -> np.ndarray:
    """[groups, G] of one reward component (groups must share G)."""
    sizes = {g.size for g in groups}
    if len(sizes) != 1:
        raise ValueError(f"groups of different sizes in one batch: {sorted(sizes)}")
    return np.stack([np.asarray(g.rewards[component], dtype=np.float64) for g in groups])


def compute_advantages(groups: list[TrajectoryGroup], estimator: str, **kwargs) -> np.ndarray:
    """Advantages over the whole batch (estimators may use batch-level statistics)."""
    return np.asarray(get_advantage_estimator(estimator)(reward_matrix(groups), **kwargs), dtype=np.float64)


@dataclass
class SampleRef:
    group: TrajectoryGroup
    index: int
    advantage: float


def flatten(groups: list[TrajectoryGroup], advantages: np.ndarray) -> list[SampleRef]:
    return [SampleRef(g, i, float(advantages[gi, i])) for gi, g in enumerate(groups) for i in range(g.size)]


def collate(items: list[SampleRef], pad_id: int) -> dict[str, torch.Tensor]:
    prompt_len = max(len(it.group.prompt_ids) for it in items)
    resp_len = max(max(len(it.group.samples[it.index].token_ids) for it in items), 1)
    b = len(items)
    input_ids = torch.full((b, prompt_len + resp_len), pad_id, dtype=torch.long)
    attention = torch.zeros((b, prompt_len + resp_len), dtype=torch.long)
    resp_mask = torch.zeros((b, resp_len), dtype=torch.float32)
    old_lp = torch.zeros((b, resp_len), dtype=torch.float32)
    for r, it in enumerate(items):
        p = it.group.prompt_ids
        s = it.group.samples[it.index]
        start = prompt_len - len(p)
        input_ids[r, start:prompt_len] = torch.tensor(p)
        attention[r, start:prompt_len] = 1
        if s.token_ids:
            n = len(s.token_ids)
            input_ids[r, prompt_len:prompt_len + n] = torch.tensor(s.token_ids)
            attention[r, prompt_len:prompt_len + n] = 1
            resp_mask[r, :n] = 1
            old_lp[r, :n] = torch.tensor(s.logprobs, dtype=torch.float32)
    batch = {
        "input_ids": input_ids, "attention_mask": attention,
        "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
        "response_mask": resp_mask, "old_logprobs": old_lp,
        "advantages": torch.tensor([it.advantage for it in items], dtype=torch.float32),
        "prompt_len": torch.tensor(prompt_len),
    }
    mm = [it.group.mm_inputs for it in items]
    if any(m for m in mm):
        batch.update(_collate_mm(mm, input_ids, prompt_len, [len(it.group.prompt_ids) for it in items]))
    return batch


def _collate_mm(mm: list[dict], input_ids: torch.Tensor, prompt_len: int, lens: list[int]) -> dict:
    """Concatenate per-sample image tensors; per-token mm arrays are placed under their prompt tokens."""
    out: dict[str, torch.Tensor] = {}
    for key in mm[0]:
        arrs = [np.asarray(m[key]) for m in mm]
        if key in ("pixel_values", "image_grid_thw"):
            out[key] = torch.as_tensor(np.concatenate(arrs, axis=0))
        else:   # per-token arrays of shape [1, prompt_len], e.g. mm_token_type_ids
            full = torch.zeros(input_ids.shape, dtype=torch.long)
            for r, (a, n) in enumerate(zip(arrs, lens)):
                full[r, prompt_len - n:prompt_len] = torch.as_tensor(a.reshape(-1)[:n])
            out[key] = full
    return out


def batch_stats(groups: list[TrajectoryGroup], advantages: np.ndarray, learner_version: int) -> dict:
    """Scalars the controller logs for a consumed batch."""
    stats: dict[str, float] = {}
    for comp in groups[0].rewards:
        stats[f"reward/{comp}"] = float(reward_matrix(groups, comp).mean())
    stats["adv/mean"] = float(advantages.mean())
    stats["adv/std"] = float(advantages.std())
    stats["zero_variance_fraction"] = zero_variance_fraction(reward_matrix(groups))
    lags = [learner_version - g.version for g in groups]
    stats["staleness/mean"] = float(np.mean(lags))
    stats["staleness/max"] = float(np.max(lags))
    lens = [len(s.token_ids) for g in groups for s in g.samples]
    stats["response/len_mean"] = float(np.mean(lens))
    stats["response/stop_fraction"] = float(np.mean([s.finish_reason == "stop" for g in groups for s in g.samples]))
    stats["response_tokens"] = float(np.sum(lens))
    fails = [f for g in groups for f in g.reward_failures if f]
    stats["reward_failures"] = float(len(fails))
    return stats
