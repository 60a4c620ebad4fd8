"""From scored TrajectoryGroups to advantages and padded tensors.

Layout of one sequence: [left pad | prompt | response | right pad]. Every prompt is left-padded to the same
length P, so the logits that predict response token t sit at column P - 1 + t for every row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data.trajectory import TrajectoryGroup
from learner.advantages import (
    Advantages,
    care_bonus,
    get_advantage_estimator,
    process_advantages,
    zero_variance_fraction,
)
from learner.losses import copo_local_weight


def reward_matrix(groups: list[TrajectoryGroup], component: str = "total") -> np.ndarray:
    """[groups, G] of one reward component (groups must share G)."""
    sizes = {g.size for g in groups}
    if len(sizes) != 1:
        raise ValueError(f"groups of different sizes in one batch: {sorted(sizes)}")
    missing = [g.group_id for g in groups if component not in g.rewards]
    if missing:
        raise ValueError(f"reward component {component!r} missing in groups {missing[:3]}")
    return np.stack([np.asarray(g.rewards[component], dtype=np.float64) for g in groups])


def likelihood_matrix(groups: list[TrajectoryGroup]) -> np.ndarray:
    """[groups, G] EMA-reference answer likelihoods (GRPO-CARE); every group must have been through it."""
    missing = [g.group_id for g in groups if g.answer_likelihood is None]
    if missing:
        raise ValueError(f"CARE is on but groups {missing[:3]} have no reference answer likelihood")
    return np.stack([np.asarray(g.answer_likelihood, dtype=np.float64) for g in groups])


def estimator_inputs(groups: list[TrajectoryGroup], algo: dict) -> dict:
    """Everything an estimator may use, besides the rewards: CARE's accuracy reward and likelihoods, COPO's
    correctness and canonical answers (computed by the reward actor's sandboxed child), config knobs."""
    kw = {**algo.get("care", {}), **algo.get("copo", {})}
    if algo.get("adv_eps") is not None:
        kw["eps"] = algo["adv_eps"]
    if algo["advantage"] == "copo":
        kw["correct"] = (reward_matrix(groups, "accuracy") > 0).astype(np.float64)
        kw["answers"] = [g.answer_classes or [""] * g.size for g in groups]
        kw["canonical"] = False
    if algo.get("care_on") or algo["advantage"] == "care":
        kw["accuracy"] = reward_matrix(groups, "accuracy_reward")
        kw["answer_likelihood"] = likelihood_matrix(groups)
    return kw


def compute_advantages(groups: list[TrajectoryGroup], algo: dict) -> Advantages:
    """Advantages over the whole batch (estimators may use batch-level statistics).

    With CARE on under another estimator (e.g. COPO), the consistency bonus is added to the rewards first:
    CARE shapes the reward, the estimator turns it into advantages. The `care` estimator adds it itself.
    """
    rewards = reward_matrix(groups)
    kw = estimator_inputs(groups, algo)
    bonus = None
    if "answer_likelihood" in kw:
        bonus = care_bonus(kw["accuracy"], kw["answer_likelihood"], kw["bonus_coef"], kw["margin"],
                           kw["upper_bound"])
        if algo["advantage"] != "care":
            rewards = rewards + bonus
    out = get_advantage_estimator(algo["advantage"])(rewards, **kw)
    adv = out if isinstance(out, Advantages) else Advantages(np.asarray(out, dtype=np.float64))
    adv.bonus = bonus
    coef = algo.get("prm_step_coef", 0.0)
    if coef > 0:   # GroundedPRM step scores as token-placed rewards, on top of the outcome advantages
        missing = [g.group_id for g in groups if g.step_scores is None]
        if missing:
            raise ValueError(f"prm.step_advantage_coef > 0 but groups {missing[:3]} have no PRM step scores")
        adv.token = [[coef * a for a in process_advantages(g.step_scores, g.step_tokens,
                                                           [len(s.token_ids) for s in g.samples])]
                     for g in groups]
    return adv


@dataclass
class SampleRef:
    group: TrajectoryGroup
    index: int
    advantage: float
    global_advantage: float = 0.0     # COPO A^G of the sample's group
    gate: float = 0.0                 # COPO sigmoid(k (H - b)) of the sample's group
    correct: float = 0.0              # 1[accuracy > 0]: COPO's soft-with-zero test
    token_advantage: np.ndarray | None = None   # [T] process advantages added to `advantage` per token


def flatten(groups: list[TrajectoryGroup], adv: Advantages | np.ndarray) -> list[SampleRef]:
    if not isinstance(adv, Advantages):
        adv = Advantages(np.asarray(adv, dtype=np.float64))
    items = []
    for gi, g in enumerate(groups):
        acc = g.rewards.get("accuracy")
        for i in range(g.size):
            items.append(SampleRef(
                g, i, float(adv.local[gi, i]),
                float(adv.global_adv[gi]) if adv.global_adv is not None else 0.0,
                float(adv.gate[gi]) if adv.gate is not None else 0.0,
                float(acc[i] > 0) if acc is not None else 0.0,
                adv.token[gi][i] if adv.token is not None else None))
    return items


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
        "advantages": _advantages(items, resp_len),
        "global_advantages": torch.tensor([it.global_advantage for it in items], dtype=torch.float32),
        "gates": torch.tensor([it.gate for it in items], dtype=torch.float32),
        "correct": torch.tensor([it.correct for it in items], dtype=torch.float32),
        "prompt_len": torch.tensor(prompt_len),
    }
    mm = [it.group.mm_inputs for it in items]
    if any(m for m in mm):
        batch.update(_collate_mm(mm, input_ids, prompt_len, [len(it.group.prompt_ids) for it in items]))
    return batch


def to_device(batch: dict, device) -> dict:
    """The collated tensors on the model's device (CUDA under DeepSpeed on GPUs); other values unchanged."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _advantages(items: list[SampleRef], resp_len: int) -> torch.Tensor:
    """[B] sequence advantages, or [B, R] when process advantages add a per-token part."""
    seq = torch.tensor([it.advantage for it in items], dtype=torch.float32)
    if all(it.token_advantage is None for it in items):
        return seq
    out = seq[:, None].repeat(1, resp_len)
    for r, it in enumerate(items):
        if it.token_advantage is not None and len(it.token_advantage):
            out[r, :len(it.token_advantage)] += torch.as_tensor(it.token_advantage, dtype=torch.float32)
    return out


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


def batch_stats(groups: list[TrajectoryGroup], adv: Advantages, learner_version: int, copo_mode: str = "") -> dict:
    """Scalars the controller logs for a consumed batch."""
    stats: dict[str, float] = {}
    for comp in groups[0].rewards:
        stats[f"reward/{comp}"] = float(reward_matrix(groups, comp).mean())
    stats["adv/mean"] = float(adv.local.mean())
    stats["adv/std"] = float(adv.local.std())
    stats["zero_variance_fraction"] = zero_variance_fraction(reward_matrix(groups))
    if adv.bonus is not None:
        stats.update(care_stats(groups, adv.bonus))
    if adv.global_adv is not None:
        stats.update(copo_stats(groups, adv, copo_mode))
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


def care_stats(groups: list[TrajectoryGroup], bonus: np.ndarray) -> dict:
    """GRPO-CARE: how often and how much the bonus fired, how sure the reference is, and the consistency rate
    (samples whose reasoning implies the answer they give; the paper's headline quantity)."""
    p = likelihood_matrix(groups)
    stats = {"care/bonus_rate": float((bonus > 0).mean()), "care/bonus_mean": float(bonus.mean()),
             "care/answer_likelihood_mean": float(p.mean())}
    if all("consistent" in g.rewards for g in groups):
        stats["care/consistency_rate"] = float(reward_matrix(groups, "consistent").mean())
    return stats


def copo_stats(groups: list[TrajectoryGroup], adv: Advantages, mode: str) -> dict:
    """COPO: answer entropy, and the zero-variance groups that still get gradient through the global loss
    (A^G != 0 and some sample with global weight 1 - w > 0). Loss-share and gate means come from the loss."""
    correct = (reward_matrix(groups, "accuracy") > 0).astype(np.float64)
    gate = np.broadcast_to(adv.gate[:, None], correct.shape)
    global_weight = 1.0 - copo_local_weight(mode, gate, adv.local, correct)
    zero_var = np.ptp(reward_matrix(groups), axis=1) <= 1e-8
    with_grad = zero_var & (np.abs(adv.global_adv) > 0) & (global_weight.max(axis=1) > 0)
    return {"copo/answer_entropy_mean": float(adv.entropy.mean()),
            "copo/global_adv_std": float(adv.global_adv.std()),
            "copo/zero_variance_with_gradient": float(with_grad.sum() / max(zero_var.sum(), 1))}
