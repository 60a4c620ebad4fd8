"""GroundedPRM step scores as token-placed process advantages (DeepSeekMath §4.1.3, process supervision).

For one group, with R every step reward of every sample (the PRM actor's step scores) and index(j) the
response token that ends step j:

    r~_j = (r_j - mean(R)) / (std(R) + eps)        std unbiased (ddof = 1), as every other estimator here
    A_t  = coef * sum_{j : index(j) >= t} r~_j

so a token is credited with the normalised rewards of its own step and of every later one. This is added to
whatever sequence advantage the algorithm gives (grpo, dr_grpo, care; COPO's gate reads sequence-level local
advantages, so the config rejects the pair). A group with fewer than two step rewards, or all equal, adds zeros.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from data.trajectory import TrajectoryGroup
from learner.config import Section


class ProcessConfig(Section):
    coef: float = Field(0.0, ge=0.0)      # > 0: add token-placed process advantages (needs prm.enabled)
    eps: float = 1e-6


def process_advantages(step_scores: list[list[float]], step_tokens: list[list[int]], lengths: list[int],
                       eps: float = 1e-6) -> list[np.ndarray]:
    """One [T_i] array per sample of a group (T_i = lengths[i]), unscaled (coef 1)."""
    flat = np.asarray([s for scores in step_scores for s in scores], dtype=np.float64)
    mean = flat.mean() if flat.size else 0.0
    std = flat.std(ddof=1) if flat.size > 1 else 0.0
    out = []
    for scores, tokens, n in zip(step_scores, step_tokens, lengths):
        adv = np.zeros(n, dtype=np.float64)
        if std > 0:
            for s, k in zip(scores, tokens):
                adv[:min(k, n - 1) + 1] += (s - mean) / (std + eps)   # tokens 0..index(j) see step j's reward
        out.append(adv)
    return out


class ProcessAdvantage:
    """The token term: [groups][G] -> [T] arrays added to the sequence advantages."""

    def __init__(self, cfg: ProcessConfig):
        self.cfg = cfg

    def __call__(self, groups: list[TrajectoryGroup]) -> list[list[np.ndarray]]:
        missing = [g.group_id for g in groups if g.step_scores is None]
        if missing:
            raise ValueError(f"algorithm.process.coef > 0 but groups {missing[:3]} have no PRM step scores")
        return [[self.cfg.coef * a for a in process_advantages(g.step_scores, g.step_tokens,
                                                               [len(s.token_ids) for s in g.samples], self.cfg.eps)]
                for g in groups]
