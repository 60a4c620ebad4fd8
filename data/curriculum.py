"""Curriculum over question types (RewardMap, docs/algorithms.md#rewardmap-curriculum): perception questions first,
route planning last.

Two modes:
- "staged" (default; the paper's intent): real stages. The sampler serves only the current stage's types
  (PromptSampler.set_types) and `observe`, called once per optimizer step, moves on by an explicit rule:
    after_steps   -- after N optimizer steps in the stage;
    when_accuracy -- when the last W groups of the *current* stage's types have mean accuracy >= x.
  The last stage is final: the curriculum stays there.
- "released_order" (the released code; docs/algorithms.md#decisions): no switch inside the trainer. The data is one
  pass in stage order, each stage's block shuffled with the run's seed as the released `rl_dataset.py` does
  (`released_order`, served by `OrderedSampler`); `observe` never switches and only tracks the stage of the
  latest consumed group, so the stage can still be logged.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from rewards.map_vqa import QUESTION_TYPES

RULES = ("after_steps", "when_accuracy")
MODES = ("staged", "released_order")


@dataclass(frozen=True)
class Stage:
    name: str
    types: tuple[str, ...]


# The released data order: shuffle(torf1+torf2) ++ shuffle(counting2+counting3) ++ shuffle(counting1) ++ planning.
DEFAULT_STAGES = (
    Stage("yes-no", ("torf1", "torf2")),
    Stage("counting", ("counting2", "counting3")),
    Stage("stops-between", ("counting1",)),
    Stage("planning", ("planning",)),
)


def _type(row: dict) -> str:
    return str(row.get("type", "")).lower()


def _stage_of(stages) -> dict[str, int]:
    return {t.lower(): i for i, stage in enumerate(stages) for t in stage.types}


def check_stages(stages) -> tuple[Stage, ...]:
    """ValueError unless every stage has known types, none empty, and no type is in two stages."""
    stages = tuple(stages)
    if not stages:
        raise ValueError("a curriculum needs at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate stage names in {names}")
    seen: dict[str, str] = {}
    for stage in stages:
        if not stage.types:
            raise ValueError(f"stage {stage.name!r} has no question types")
        for t in stage.types:
            if t.lower() not in QUESTION_TYPES:
                raise ValueError(f"stage {stage.name!r}: unknown question type {t!r}; "
                                 f"known: {', '.join(QUESTION_TYPES)}")
            if t.lower() in seen:
                raise ValueError(f"question type {t!r} is in stage {seen[t.lower()]!r} and in stage {stage.name!r}")
            seen[t.lower()] = stage.name
    return stages


class Curriculum:
    """Which stage training is in, and when to move on. See the module docstring for the rules."""

    def __init__(self, stages=DEFAULT_STAGES, rule: str = "after_steps", after_steps: int = 50,
                 accuracy: float = 0.6, window: int = 32, mode: str = "staged"):
        self.stages = check_stages(stages)
        if rule not in RULES:
            raise ValueError(f"unknown curriculum rule {rule!r}; choose one of {RULES}")
        if mode not in MODES:
            raise ValueError(f"unknown curriculum mode {mode!r}; choose one of {MODES}")
        if after_steps < 1:
            raise ValueError(f"after_steps must be >= 1, got {after_steps}")
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.rule, self.after_steps, self.accuracy = rule, after_steps, accuracy
        self.window_size, self.mode = window, mode
        self._stage_of = _stage_of(self.stages)
        self.index = 0
        self.steps_in_stage = 0
        self.window: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()                 # the controller observes; a checkpoint may read the state

    @property
    def current(self) -> Stage:
        return self.stages[self.index]

    @property
    def finished(self) -> bool:
        return self.index == len(self.stages) - 1

    def observe(self, step: int, types: list[str], accuracies: list[float]) -> dict | None:
        """One optimizer step's consumed groups (question type, mean accuracy per group). Returns the switch event
        {"step", "from", "to", "reason"} when this step ends the stage, else None."""
        if len(types) != len(accuracies):
            raise ValueError(f"{len(types)} group types but {len(accuracies)} group accuracies")
        with self._lock:
            if self.mode == "released_order":          # the data order is the curriculum: only follow it
                staged = [self._stage_of[t.lower()] for t in types if t.lower() in self._stage_of]
                if staged:
                    self.index = staged[-1]
                return None
            self.steps_in_stage += 1
            own = {t.lower() for t in self.current.types}
            # groups of other types (still in flight from the previous stage) say nothing about this one
            self.window.extend(float(a) for t, a in zip(types, accuracies) if t.lower() in own)
            if self.finished:
                return None
            if self.rule == "after_steps":
                if self.steps_in_stage < self.after_steps:
                    return None
                reason = f"after {self.steps_in_stage} steps"
            else:
                if len(self.window) < self.window_size:
                    return None
                mean = sum(self.window) / len(self.window)
                if mean < self.accuracy - 1e-12:       # tolerance: a window of 0.6s may sum to 0.5999...
                    return None
                reason = f"accuracy {mean:.2f} >= {self.accuracy:.2f} over {len(self.window)} groups"
            event = {"step": step, "from": self.current.name, "to": self.stages[self.index + 1].name, "reason": reason}
            self.index += 1
            self.steps_in_stage = 0
            self.window.clear()
            return event

    def state_dict(self) -> dict:
        with self._lock:
            return {"mode": self.mode, "stages": [s.name for s in self.stages], "index": self.index,
                    "steps_in_stage": self.steps_in_stage, "window": list(self.window)}

    def load_state_dict(self, state: dict) -> None:
        # the rule's numbers come from the config (a resume may change them); the stages and mode may not change,
        # or the saved index would point at a different stage
        if state["mode"] != self.mode:
            raise ValueError(f"checkpoint curriculum mode {state['mode']!r} != configured {self.mode!r}")
        if state["stages"] != [s.name for s in self.stages]:
            raise ValueError(f"checkpoint stages {state['stages']} != configured {[s.name for s in self.stages]}")
        with self._lock:
            self.index, self.steps_in_stage = int(state["index"]), int(state["steps_in_stage"])
            self.window = deque((float(a) for a in state["window"]), maxlen=self.window_size)


def stage_metrics(curriculum: Curriculum) -> dict:
    """Numbers for the JSONL log (the stage name goes into the switch event instead)."""
    with curriculum._lock:
        out = {"curriculum/stage": float(curriculum.index),
               "curriculum/steps_in_stage": float(curriculum.steps_in_stage)}
        if curriculum.mode == "staged" and curriculum.rule == "when_accuracy" and curriculum.window:
            out["curriculum/window_accuracy"] = sum(curriculum.window) / len(curriculum.window)
    return out


def released_order(rows: list[dict], stages=DEFAULT_STAGES, seed: int | None = None) -> list[dict]:
    """Rows sorted by the stage of their type: stable (input order kept within a stage), rows of types in no stage
    last. seed=None keeps the input order; a seed shuffles within each stage, as the released code does."""
    stage_of = _stage_of(check_stages(stages))
    blocks: list[list[dict]] = [[] for _ in range(len(stages) + 1)]
    for row in rows:
        blocks[stage_of.get(_type(row), len(stages))].append(row)
    if seed is not None:
        rng = np.random.default_rng(seed)
        blocks[:-1] = [[block[i] for i in rng.permutation(len(block))] for block in blocks[:-1]]
    return [row for block in blocks for row in block]


class OrderedSampler:
    """The released single-pass order as a PromptSampler: walks released_order(rows, stages, seed) once (stages in
    order, each stage's rows a permutation drawn from `seed`), then repeats the same order (the released run is
    one episode; the repeat only keeps a longer run fed). set_types is a no-op: in this mode the order is the
    curriculum, and nothing restricts it. The seed is required: the released code always shuffles."""

    def __init__(self, rows: list[dict], stages=DEFAULT_STAGES, *, seed: int):
        if not rows:
            raise ValueError("no task rows to sample from")
        if not isinstance(seed, int):
            raise ValueError(f"OrderedSampler needs an integer seed, got {seed!r}")
        self.seed = seed
        self.rows = released_order(rows, stages, seed)
        self.passes = 0
        self.position = 0
        self._lock = threading.Lock()

    def set_types(self, types: list[str] | None) -> None:
        pass

    def next(self, k: int) -> list[dict]:
        out = []
        with self._lock:
            for _ in range(k):
                if self.position >= len(self.rows):
                    self.passes += 1
                    self.position = 0
                out.append(self.rows[self.position])
                self.position += 1
        return out

    def state_dict(self) -> dict:
        with self._lock:
            return {"passes": self.passes, "position": self.position, "seed": self.seed, "rows": len(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        # the position indexes one seeded order of one row set: another seed or row count would resume elsewhere
        if "seed" not in state:
            raise ValueError("the checkpoint's released-order state has no seed: it was written when this mode served "
                             "rows unshuffled, so its position does not index the seeded order")
        if int(state["seed"]) != self.seed or int(state["rows"]) != len(self.rows):
            raise ValueError(f"checkpoint released order (seed {state['seed']}, {state['rows']} rows) != configured "
                             f"(seed {self.seed}, {len(self.rows)} rows)")
        with self._lock:
            self.passes, self.position = int(state["passes"]), int(state["position"])
