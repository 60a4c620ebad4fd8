"""Reward scoring under a per-sample time limit: hangs and crashes cost one sample, never the group; the
scoring worker's start-up has its own limit and a warm spare replaces a killed worker at once."""
import sys
import time
import types

import numpy as np
import pytest

from actors.reward import score_group, score_map_vqa
from actors.scoring_sandbox import SampleScorer, ScorerStartupError
from data.trajectory import Sample, TrajectoryGroup

SAMPLE_DEADLINE_S = 2.0    # tight: the deadline counts the scoring alone, never a worker's start-up
STARTUP_S = 300.0          # generous: spawn + imports (ray, numpy, sympy) on a busy machine


def slow_or_crashing(response: str, row: dict, options: dict) -> dict:
    if response == "hang":
        time.sleep(60)
    if response == "crash":
        raise RuntimeError("scorer bug")
    value = float(len(response))
    return {"format": 1.0, "accuracy": 0.0, "detail": 0.0, "weight": 1.0, "total": value, "answer": response}


def group_of(texts, row=None):
    samples = [Sample([1, 2], [-0.1, -0.2], t, "stop", 0) for t in texts]
    return TrajectoryGroup("g", "p", row or {}, [5, 6], samples, version=0)


def test_timeout_and_crash_get_zero_reward_and_a_reason():
    scorer = SampleScorer(slow_or_crashing, {}, timeout_s=SAMPLE_DEADLINE_S, startup_timeout_s=STARTUP_S)
    try:
        g = group_of(["ab", "hang", "crash", "abcd"])
        reasons = score_group(g, scorer)
        stats = scorer.stats()
    finally:
        scorer.close()
    np.testing.assert_array_equal(g.rewards["total"], [2.0, 0.0, 0.0, 4.0])
    assert g.reward_failures[0] is None and g.reward_failures[3] is None
    assert g.reward_failures[1] == "timeout"
    assert g.reward_failures[2].startswith("error: RuntimeError")
    assert reasons == {"timeout": 1, "error": 1}
    # the hang killed one worker; the spare took over and a new spare was started behind it
    assert stats["scorer_restarts"] == 1 and stats["scorer_starts"] == 3


def test_after_a_timeout_the_warm_spare_scores_the_next_sample_without_a_start_up():
    scorer = SampleScorer(slow_or_crashing, {}, timeout_s=SAMPLE_DEADLINE_S, startup_timeout_s=STARTUP_S)
    try:
        scorer.warm()                                 # active worker and spare both ready
        startup_s = scorer.stats()["scorer_startup_max_s"]
        t0 = time.monotonic()
        assert scorer("hang", {}) == (None, "timeout")
        hang_s = time.monotonic() - t0
        t0 = time.monotonic()
        result, reason = scorer("abc", {})
        next_s = time.monotonic() - t0
        stats = scorer.stats()
    finally:
        scorer.close()
    assert SAMPLE_DEADLINE_S <= hang_s < 30       # cut off at its deadline, not at the 60 s sleep
    assert reason is None and result["total"] == 3.0
    # the next sample ran on the warm spare: its latency holds no spawn + imports (measured above)
    assert next_s < startup_s / 2, (next_s, startup_s)
    assert stats["scorer_restarts"] == 1 and stats["scorer_starts"] == 3


def test_a_too_short_startup_limit_is_a_clear_error_naming_it():
    scorer = SampleScorer(slow_or_crashing, {}, timeout_s=SAMPLE_DEADLINE_S, startup_timeout_s=0.01)
    try:
        with pytest.raises(ScorerStartupError, match=r"reward\.startup_timeout_s=0\.01"):
            scorer("ab", {})
    finally:
        scorer.close()


def test_a_worker_that_cannot_start_is_named_with_its_exit_code(monkeypatch):
    # a module only this process has: the spawned child cannot import it, so it dies while starting
    ghost = types.ModuleType("scorer_module_only_the_parent_has")
    exec("def score(response, row, options):\n    return {}", ghost.__dict__)
    monkeypatch.setitem(sys.modules, ghost.__name__, ghost)
    scorer = SampleScorer(ghost.score, {}, timeout_s=SAMPLE_DEADLINE_S, startup_timeout_s=STARTUP_S)
    try:
        with pytest.raises(ScorerStartupError, match=r"exited with code 1 while starting.*startup_timeout_s"):
            scorer.warm()
    finally:
        scorer.close()


def test_map_vqa_scorer_scores_a_correct_torf_answer():
    row = {"type": "torf1", "answer": 1, "difficulty_city": "middle", "question_transfer_count": 0,
           "station_1": "", "station_2": "", "json": {"Line 1": ["A", "B"]}}
    scorer = SampleScorer(score_map_vqa, {"detail_penalty": "paper"}, timeout_s=30.0, startup_timeout_s=STARTUP_S)
    try:
        g = group_of(["\\boxed{yes}", "\\boxed{no}", "garbage"], row)
        reasons = score_group(g, scorer)
    finally:
        scorer.close()
    assert not reasons
    # middle city weight 1.2: correct = 1.2 * (1 format + 10 accuracy) = 13.2; wrong but boxed = 1.2 * 1
    np.testing.assert_allclose(g.rewards["total"], [13.2, 1.2, 0.0])
    np.testing.assert_allclose(g.rewards["accuracy"], [1, 0, 0])
    # classes from the sandboxed child: canonical (unreadable -> "") and raw (unreadable -> None)
    assert g.answer_classes == ["yes", "no", ""]
    assert g.answer_raw == ["yes", "no", None]
    table = g.to_arrow()
    assert table.column("answer_raw").to_pylist() == ["yes", "no", None]
    assert table.column("answer_class").to_pylist() == ["yes", "no", ""]


def test_failed_samples_have_no_raw_answer():
    scorer = SampleScorer(slow_or_crashing, {}, timeout_s=30.0, startup_timeout_s=STARTUP_S)
    try:
        g = group_of(["ab", "crash"])
        score_group(g, scorer)
    finally:
        scorer.close()
    assert g.answer_raw == ["ab", None] and g.answer_classes == ["ab", ""]
    assert group_of(["x"]).to_arrow().column("answer_raw").to_pylist() == [None]   # unscored group: null


def test_malformed_row_is_counted_as_bad_row():
    scorer = SampleScorer(score_map_vqa, {}, timeout_s=30.0, startup_timeout_s=STARTUP_S)
    try:
        g = group_of(["\\boxed{yes}"], {"type": "no-such-type"})
        reasons = score_group(g, scorer)
    finally:
        scorer.close()
    assert g.reward_failures[0].startswith("bad_row")
    assert reasons == {"bad_row": 1}
