"""Core types that travel between actors: a prompt's G samples and their scores.

A `TrajectoryGroup` is produced by a rollout actor, scored by a reward actor, parked (by reference) in the
buffer and consumed by the learner. It is plain data (numpy + lists), so the object store moves it without
pickling framework objects, and it flattens to a pyarrow record batch, the on-disk rollout log format.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

REWARD_COMPONENTS = ("format", "accuracy", "accuracy_reward", "detail", "weight", "process", "consistency_bonus",
                     "consistent", "total")


@dataclass
class Sample:
    token_ids: list[int]                  # response tokens only
    logprobs: list[float]                 # behaviour log-probabilities, one per response token
    text: str
    finish_reason: str                    # "stop" | "length" | ...
    version: int                          # policy version that generated it


@dataclass
class TrajectoryGroup:
    group_id: str
    prompt_id: str
    row: dict                             # task metadata (question row without the image bytes)
    prompt_ids: list[int]
    samples: list[Sample]
    version: int                          # policy version at generation
    mm_inputs: dict | None = None         # processor outputs for multimodal prompts (pixel_values, grid)
    rewards: dict[str, np.ndarray] = field(default_factory=dict)  # component -> [G]
    answers: list[str] = field(default_factory=list)
    answer_classes: list[str] = field(default_factory=list)          # canonical answers (COPO entropy)
    # extracted answer strings, None where none was extracted (COPO's released exact-string classes)
    answer_raw: list[str | None] = field(default_factory=list)
    answer_likelihood: np.ndarray | None = None                      # [G] EMA reference p_i (GRPO-CARE)
    reward_failures: list[str | None] = field(default_factory=list)  # reason per sample, None when scored
    step_scores: list[list[float]] | None = None   # [G][steps] GroundedPRM step scores, when a PRM scored it
    step_tokens: list[list[int]] | None = None     # [G][steps] index of the response token ending each step
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.samples)

    @property
    def scored(self) -> bool:
        return "total" in self.rewards

    def num_response_tokens(self) -> int:
        return sum(len(s.token_ids) for s in self.samples)

    def to_arrow(self) -> pa.RecordBatch:
        """One row per sample: ids, text, logprobs, reward components, answer (also its class and raw string,
        null where none was extracted), failure reason."""
        g = self.size
        cols: dict[str, list] = {
            "group_id": [self.group_id] * g,
            "prompt_id": [self.prompt_id] * g,
            "type": [str(self.row.get("type", ""))] * g,
            "version": [s.version for s in self.samples],
            "prompt_ids": [self.prompt_ids] * g,
            "response_ids": [s.token_ids for s in self.samples],
            "logprobs": [s.logprobs for s in self.samples],
            "text": [s.text for s in self.samples],
            "finish_reason": [s.finish_reason for s in self.samples],
            "answer": list(self.answers) if self.answers else [""] * g,
            "answer_class": list(self.answer_classes) if self.answer_classes else [""] * g,
            "answer_raw": pa.array(list(self.answer_raw) if self.answer_raw else [None] * g, type=pa.string()),
            "answer_likelihood": ([float(p) for p in self.answer_likelihood] if self.answer_likelihood is not None
                                  else [float("nan")] * g),
            "reward_failure": [r or "" for r in self.reward_failures] or [""] * g,
            "step_scores": ([[float(x) for x in s] for s in self.step_scores] if self.step_scores is not None
                            else [[] for _ in range(g)]),
        }
        for name in REWARD_COMPONENTS:
            vals = self.rewards.get(name)
            cols[f"reward_{name}"] = [float(v) for v in vals] if vals is not None else [0.0] * g
        cols["timing"] = [json.dumps(self.timing)] * g
        return pa.RecordBatch.from_pydict(cols)
