"""TaskSchedule: which questions the feeder draws next (RewardMap curriculum stage x MMR1 VAS weights).

It owns the sampler the feeder reads (uniform `PromptSampler`, `VarianceAwareSampler`, or the released
single-pass `OrderedSampler`) and the `Curriculum`. The controller calls `observe` after each learner step
(a stage switch restricts the sampler to the new stage's types) and then `refresh_vps` when `vps_due`: a
scoring pass of N samples per prompt of the current stage through the same rollout and reward actors. Passes
run at version 0 and every `update_every` versions after the last stage switch: a switch schedules a pass
over the new stage's prompts right away (they have never been scored) and restarts the period there.
"""
from __future__ import annotations

import numpy as np

from cluster.config import WaypointConfig
from cluster.feeder import SEED_STRIDE
from data.curriculum import DEFAULT_STAGES, Curriculum, OrderedSampler, Stage, stage_metrics
from data.sampler import PromptSampler
from data.sampling import VarianceAwareSampler, variance_promotion_score


def curriculum_stages(cfg: WaypointConfig) -> tuple[Stage, ...]:
    """The configured stages; by default RewardMap's order, keeping the stages whose types this run loads."""
    c = cfg.data.curriculum
    if c.stages is not None:
        return tuple(Stage(s.name, tuple(s.types)) for s in c.stages)
    loaded = {t.lower() for t in cfg.data.types}
    stages = tuple(Stage(s.name, tuple(t for t in s.types if t in loaded)) for s in DEFAULT_STAGES)
    return tuple(s for s in stages if s.types)


class TaskSchedule:
    def __init__(self, cfg: WaypointConfig, rows: list[dict]):
        d, seed = cfg.data, cfg.train.seed
        self.rows, self.vas_cfg = rows, d.vas
        self.curriculum = None
        if d.curriculum.enabled:
            c = d.curriculum
            self.curriculum = Curriculum(curriculum_stages(cfg), c.rule, c.after_steps, c.accuracy, c.window, c.mode)
        if self.curriculum is not None and self.curriculum.mode == "released_order":
            if d.vas.enabled:
                raise ValueError("data.curriculum.mode=released_order is a fixed data order: it cannot use VAS")
            self.sampler = OrderedSampler(rows, self.curriculum.stages, seed=seed)
        elif d.vas.enabled:
            self.sampler = VarianceAwareSampler(rows, cfg.train.groups_per_step, d.vas.mix_ratio, d.vas.momentum,
                                                seed)
        else:
            self.sampler = PromptSampler(rows, seed)
        self.vps_anchor = 0             # the version VPS passes count from: 0, then the version after each switch
        self._apply_stage()

    def _apply_stage(self) -> None:
        if self.curriculum is not None and self.curriculum.mode == "staged":
            self.sampler.set_types(list(self.curriculum.current.types))

    @property
    def stage_types(self) -> set[str] | None:
        return None if self.curriculum is None else {t.lower() for t in self.curriculum.current.types}

    # ---- per step ----------------------------------------------------------------------------------
    def observe(self, step: int, consumed: list[dict]) -> dict | None:
        """consumed: [{"type", "accuracy"}] of the step's groups. Returns a stage-switch event, if any."""
        if self.curriculum is None:
            return None
        event = self.curriculum.observe(step, [g["type"] for g in consumed], [g["accuracy"] for g in consumed])
        if event is not None:
            self._apply_stage()
            self.vps_anchor = step + 1      # the new stage is scored before the next optimizer step
        return event

    def vps_due(self, step: int) -> bool:
        """A scoring pass before optimizer step `step`: 0 (the initial estimate), the step right after a stage
        switch, and every update_every steps after the latest of those."""
        since = step - self.vps_anchor
        return self.vas_cfg.enabled and since >= 0 and since % self.vas_cfg.update_every == 0

    def refresh_vps(self, score_fn, seed: int) -> dict:
        """Score N samples per prompt of the current stage with `score_fn(rows, n, seeds) -> per-sample dicts`
        (with token_ids), then VPS = minmax(alpha p(1-p) + beta TDS) into the sampler. Returns metrics."""
        v = self.vas_cfg
        types = self.stage_types
        pool = [r for r in self.rows if types is None or str(r["type"]).lower() in types]
        seeds = [seed * 1_000_003 + i * SEED_STRIDE for i in range(len(pool))]
        results = score_fn(pool, v.samples, seeds)
        by_prompt: dict[str, list[dict]] = {}
        for r in results:
            by_prompt.setdefault(r["prompt_id"], []).append(r)
        ids = [str(r["id"]) for r in pool]
        correct = np.array([[s["accuracy"] > 0 for s in by_prompt[i]] for i in ids], dtype=np.float64)
        tokens = [[s["token_ids"] for s in by_prompt[i]] for i in ids]
        vps = variance_promotion_score(correct, tokens, v.alpha, v.beta, v.diversity)
        self.sampler.update_scores(ids, vps)
        p = correct.mean(axis=1)
        return {"vas/scored_prompts": float(len(ids)),
                "vas/scoring_zero_variance_fraction": float(np.mean((p == 0) | (p == 1)))}

    def metrics(self) -> dict:
        out = stage_metrics(self.curriculum) if self.curriculum is not None else {}
        if isinstance(self.sampler, VarianceAwareSampler):
            out.update(self.sampler.stats())
        return out

    # ---- checkpoint (the controller saves this as "sampler") -----------------------------------------
    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(),
                "curriculum": self.curriculum.state_dict() if self.curriculum is not None else None,
                "vps_anchor": self.vps_anchor}

    def load_state_dict(self, state: dict) -> None:
        if "sampler" not in state:          # a checkpoint from before curricula: the PromptSampler state itself
            state = {"sampler": state, "curriculum": None}
        if self.curriculum is not None:
            if state["curriculum"] is None:
                raise ValueError("the checkpoint has no curriculum state but data.curriculum is enabled")
            self.curriculum.load_state_dict(state["curriculum"])
        self.sampler.load_state_dict(state["sampler"])
        # checkpoints from before switch-triggered passes counted every period from version 0
        self.vps_anchor = int(state.get("vps_anchor", 0))
