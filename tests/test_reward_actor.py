"""Reward scoring under a per-sample time limit: hangs and crashes cost one sample, never the group."""
import time

import numpy as np

from actors.reward import SampleScorer, score_group, score_map_vqa
from data.trajectory import Sample, TrajectoryGroup


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
    # 10 s: each call after a kill starts a fresh spawned child (imports included), slow on a busy machine
    scorer = SampleScorer(slow_or_crashing, {}, timeout_s=10.0)
    try:
        g = group_of(["ab", "hang", "crash", "abcd"])
        t0 = time.time()
        reasons = score_group(g, scorer)
        assert time.time() - t0 < 55                 # the 60 s hang was cut off
    finally:
        scorer.close()
    np.testing.assert_array_equal(g.rewards["total"], [2.0, 0.0, 0.0, 4.0])
    assert g.reward_failures[0] is None and g.reward_failures[3] is None
    assert g.reward_failures[1] == "timeout"
    assert g.reward_failures[2].startswith("error: RuntimeError")
    assert reasons == {"timeout": 1, "error": 1}


def test_map_vqa_scorer_scores_a_correct_torf_answer():
    row = {"type": "torf1", "answer": 1, "difficulty_city": "middle", "question_transfer_count": 0,
           "station_1": "", "station_2": "", "json": {"Line 1": ["A", "B"]}}
    scorer = SampleScorer(score_map_vqa, {"detail_penalty": "paper"}, timeout_s=30.0)
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
    scorer = SampleScorer(slow_or_crashing, {}, timeout_s=30.0)
    try:
        g = group_of(["ab", "crash"])
        score_group(g, scorer)
    finally:
        scorer.close()
    assert g.answer_raw == ["ab", None] and g.answer_classes == ["ab", ""]
    assert group_of(["x"]).to_arrow().column("answer_raw").to_pylist() == [None]   # unscored group: null


def test_malformed_row_is_counted_as_bad_row():
    scorer = SampleScorer(score_map_vqa, {}, timeout_s=30.0)
    try:
        g = group_of(["\\boxed{yes}"], {"type": "no-such-type"})
        reasons = score_group(g, scorer)
    finally:
        scorer.close()
    assert g.reward_failures[0].startswith("bad_row")
    assert reasons == {"bad_row": 1}
