"""RewardActor: scores a TrajectoryGroup's samples with a pure function from `rewards/`.

Each sample is scored in a worker *process* under a time limit: a pathological answer (a regex that
backtracks forever, a sympy call that never returns) is killed with its process, the sample gets reward 0 and
a counted reason, and the rest of the group still flows.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter
from multiprocessing.pool import Pool

import numpy as np
import ray

from data.trajectory import TrajectoryGroup
from rewards.errors import RowError

SCORE_KEYS = ("format", "accuracy", "accuracy_reward", "detail", "weight", "consistent", "total")
OPTIONAL_KEYS = ("accuracy_reward", "consistent")


def score_map_vqa(response: str, row: dict, options: dict) -> dict:
    from rewards.map_vqa import score  # imported in the worker process
    return score(response, row, **options)


def score_math(response: str, row: dict, options: dict) -> dict:
    from rewards.math_answer import score  # imported in the worker process
    return score(response, row, **options)


SCORERS = {"map_vqa": score_map_vqa, "math": score_math}


STARTUP_TIMEOUT_S = 120.0


def _loaded(fn) -> bool:
    """Runs in a new child: unpickling `fn` has imported its module (and with it ray, numpy, ...)."""
    return callable(fn)


def _apply(job: tuple):
    fn, response, row, options = job
    return fn(response, row, options)


class SampleScorer:
    """Runs `fn(response, row, options)` in a child process with a per-call deadline."""

    def __init__(self, fn, options: dict, timeout_s: float):
        self.fn, self.options, self.timeout_s = fn, options, timeout_s
        self.pool: Pool | None = None

    def _pool(self) -> Pool:
        if self.pool is None:
            self.pool = mp.get_context("spawn").Pool(1)
            # the per-sample clock starts once the child is up with the scorer's module imported: spawning it
            # took over 2 s on the loaded 2-core machine, which timed out the first sample of a fresh child
            self.pool.apply_async(_loaded, (self.fn,)).get(STARTUP_TIMEOUT_S)
        return self.pool

    def start(self) -> None:
        self._pool()

    def __call__(self, response: str, row: dict) -> tuple[dict | None, str | None]:
        """Returns (scores, None) or (None, reason)."""
        pending = self._pool().apply_async(self.fn, (response, row, self.options))
        try:
            return pending.get(self.timeout_s), None
        except mp.TimeoutError:
            self.pool.terminate()          # the only way to stop a runaway pure-Python call
            self.pool = None
            return None, "timeout"
        except RowError as e:              # the task row itself is malformed
            return None, f"bad_row: {e}"
        except Exception as e:             # noqa: BLE001 - any other failure is counted, never raised
            return None, f"error: {type(e).__name__}: {e}"

    def score_many(self, responses: list[str], row: dict) -> list[tuple[dict | None, str | None]]:
        """`__call__` for every response of a group, pipelined: all are sent to the child at once and each result
        is awaited under the per-sample limit (one round trip each cost ~0.4 ms, more than scoring a short
        answer). A sample over the limit kills the child, gets "timeout", and the rest go to a fresh child."""
        out: list[tuple[dict | None, str | None]] = []
        while len(out) < len(responses):
            rest = responses[len(out):]
            results = self._pool().imap(_apply, [(self.fn, r, row, self.options) for r in rest])
            for _ in rest:
                try:
                    out.append((results.next(self.timeout_s), None))
                except mp.TimeoutError:
                    self.pool.terminate()
                    self.pool = None
                    out.append((None, "timeout"))
                    break
                except RowError as e:
                    out.append((None, f"bad_row: {e}"))
                except Exception as e:     # noqa: BLE001 - any other failure is counted, never raised
                    out.append((None, f"error: {type(e).__name__}: {e}"))
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None


def score_group(group: TrajectoryGroup, scorer: SampleScorer) -> Counter:
    """Fills group.rewards / answers / answer_classes / answer_raw / reward_failures in place; returns failure
    reasons counted. A failed sample has answer "" and class "" but answer_raw None (no answer extracted)."""
    comps = {k: np.zeros(group.size, dtype=np.float64) for k in SCORE_KEYS}
    answers, classes, raw, failures = [], [], [], []
    reasons: Counter = Counter()
    results = scorer.score_many([sample.text for sample in group.samples], group.row)
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
    def __init__(self, kind: str, options: dict, sample_timeout_s: float):
        if kind not in SCORERS:
            raise ValueError(f"unknown reward kind {kind!r}; known: {sorted(SCORERS)}")
        self.scorer = SampleScorer(SCORERS[kind], options, sample_timeout_s)
        self.scorer.start()   # the child starts now, while the rollout engines load, not on the first group
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
        return {"samples_scored": self.scored, "reward_failures": dict(self.failures)}

    def ready(self) -> bool:
        return True
