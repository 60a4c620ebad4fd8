"""RewardActor: scores a TrajectoryGroup's samples with a pure function from `rewards/`.

Each sample is scored in a sandboxed worker *process* under a time limit (`actors/scoring_sandbox.py`): a
pathological answer (a regex that backtracks forever, a sympy call that never returns) is killed with its
process, the sample gets reward 0 and a counted reason, a warm spare takes over, and the rest of the group still
flows. The worker's start-up has its own limit and never counts against a sample's.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import ray

from actors.scoring_sandbox import SampleScorer
from data.trajectory import TrajectoryGroup
from rewards.map_vqa import score as map_vqa_score       # module level: loaded in the worker before 'ready'
from rewards.math_answer import score as math_answer_score

SCORE_KEYS = ("format", "accuracy", "accuracy_reward", "detail", "weight", "consistent", "total")
OPTIONAL_KEYS = ("accuracy_reward", "consistent")


def score_map_vqa(response: str, row: dict, options: dict) -> dict:
    return map_vqa_score(response, row, **options)


def score_math(response: str, row: dict, options: dict) -> dict:
    return math_answer_score(response, row, **options)


SCORERS = {"map_vqa": score_map_vqa, "math": score_math}


def score_group(group: TrajectoryGroup, scorer: SampleScorer) -> Counter:
    """Fills group.rewards / answers / answer_classes / answer_raw / reward_failures in place; returns failure
    reasons counted. A failed sample has answer "" and class "" but answer_raw None (no answer extracted)."""
    comps = {k: np.zeros(group.size, dtype=np.float64) for k in SCORE_KEYS}
    answers, classes, raw, failures = [], [], [], []
    reasons: Counter = Counter()
    results = [scorer(sample.text, group.row) for sample in group.samples]
    for i, (result, reason) in enumerate(results):
        if result is None:
            failures.append(reason)
            reasons[reason.split(":")[0]] += 1
            answers.append("")
            classes.append("")
            raw.append(None)
            continue
        for k in SCORE_KEYS:   # scorers other than map_vqa may omit the CARE/COPO extras
            comps[k][i] = float(result[k] if k not in OPTIONAL_KEYS else result.get(k, 0.0))
        answers.append(str(result.get("answer", "")))
        classes.append(str(result.get("answer_class", answers[-1])))
        extracted = result.get("answer_raw", answers[-1] or None)   # computed in the child, like the class
        raw.append(None if extracted is None else str(extracted))
        failures.append(None)
    group.rewards.update(comps)
    group.answers = answers
    group.answer_classes = classes
    group.answer_raw = raw
    group.reward_failures = failures
    return reasons


@ray.remote
class RewardActor:
    def __init__(self, kind: str, options: dict, sample_timeout_s: float, startup_timeout_s: float = 120.0):
        if kind not in SCORERS:
            raise ValueError(f"unknown reward kind {kind!r}; known: {sorted(SCORERS)}")
        self.scorer = SampleScorer(SCORERS[kind], options, sample_timeout_s, startup_timeout_s)
        self.failures: Counter = Counter()
        self.scored = 0

    def score(self, group: TrajectoryGroup) -> tuple[TrajectoryGroup, dict]:
        """Call with `num_returns=2`: (scored group, small status). The controller reads only the status
        (version, failures), so trajectories never travel through it."""
        t0 = time.perf_counter()
        reasons = score_group(group, self.scorer)
        self.failures.update(reasons)
        self.scored += group.size
        group.timing["reward_s"] = time.perf_counter() - t0
        return group, {"version": group.version, "samples": group.size, "failures": dict(reasons),
                       "generate_s": group.timing.get("generate_s", 0.0), "reward_s": group.timing["reward_s"],
                       "response_tokens": group.num_response_tokens()}

    def stats(self) -> dict:
        return {"samples_scored": self.scored, "reward_failures": dict(self.failures), **self.scorer.stats()}

    def ready(self) -> bool:
        """Starts the scoring worker and its spare: a too-short reward.startup_timeout_s fails here, by name."""
        self.scorer.warm()
        return True
