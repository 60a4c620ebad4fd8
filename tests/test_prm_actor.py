"""The PRM scoring stage without Ray: tool-only step scores placed on tokens, and the generative path on a tiny
model served by the HF engine (it never writes a label, so every step falls back to 0.5 and is counted)."""
import numpy as np
import pytest

from cluster.config import load_config
from data.trajectory import Sample, TrajectoryGroup
from learner.model_zoo import resolve_model

RESPONSE = "2 + 3 = 5\n\n5 * 2 = 11\n\nSo the answer is \\boxed{11}."


@pytest.fixture(scope="module")
def policy_path():
    return resolve_model("tiny-qwen2")


def _group(tokenizer, texts):
    samples = [Sample(tokenizer(t, add_special_tokens=False)["input_ids"], [], t, "stop", 0) for t in texts]
    return TrajectoryGroup("g", "p", {"question": "Compute (2 + 3) * 2.", "type": "math"}, [1], samples, 0,
                           rewards={"total": np.array([2.0] * len(texts)), "accuracy": np.zeros(len(texts))})


def _scorer(policy_path, **overrides):
    from actors.prm import ProcessScorer
    cfg = load_config(None, [f"prm.{k}={v}" for k, v in overrides.items()])
    return ProcessScorer(cfg.prm.model_dump(), policy_path, engine="hf", rollout_cfg=cfg.rollout.model_dump())


def test_tool_only_scores_verified_refuted_and_unchecked_steps(policy_path):
    scorer = _scorer(policy_path, aggregation="mean", weight=2.0)
    try:
        g = _group(scorer.policy_tokenizer, [RESPONSE, "no equations here"])
        scorer.score(g)
        assert g.step_scores == [[1.0, 0.0, 0.5], [0.5]]
        np.testing.assert_allclose(g.rewards["process"], [0.5, 0.5])
        np.testing.assert_allclose(g.rewards["total"], [2.0 + 2 * 0.5, 2.0 + 2 * 0.5])
        # each step's reward sits on the token that holds its last character
        tok = scorer.policy_tokenizer
        ids = g.samples[0].token_ids
        step_ends = [RESPONSE.index("= 5") + 3, RESPONSE.index("= 11") + 4, len(RESPONSE)]
        for end, k in zip(step_ends, g.step_tokens[0]):
            assert len(tok.decode(ids[:k])) < end <= len(tok.decode(ids[:k + 1]))
        stats = scorer.stats()
        assert stats["steps_per_sample"] == 2.0
        assert stats["verified_rate"] == pytest.approx(1 / 4) and stats["refuted_rate"] == pytest.approx(1 / 4)
        assert stats["not_checkable_rate"] == pytest.approx(2 / 4)
        assert stats["score_p50"] == 0.5 and stats["tool_timeouts"] == 0.0
    finally:
        scorer.close()


def test_min_aggregation_and_empty_response(policy_path):
    scorer = _scorer(policy_path, aggregation="min")
    try:
        g = _group(scorer.policy_tokenizer, [RESPONSE, ""])
        scorer.score(g)
        np.testing.assert_allclose(g.rewards["process"], [0.0, 0.0])
        assert g.step_scores[1] == [] and scorer.stats()["samples_without_steps"] == 1.0
    finally:
        scorer.close()


def test_generative_prm_path_runs_and_counts_missing_labels(policy_path):
    scorer = _scorer(policy_path, model=policy_path, max_new_tokens=6, top_logprobs=3)
    try:
        g = _group(scorer.policy_tokenizer, [RESPONSE, "1 + 1 = 2"])
        scorer.score(g)
        assert [len(s) for s in g.step_scores] == [3, 1]
        stats = scorer.stats()
        # an untrained model writes no Right/Wrong label: s = 0.5 (GroundedPRM's fallback), every time counted
        assert stats["label_no_label_rate"] + stats["label_both_rate"] + stats["label_right_only_rate"] \
            + stats["label_wrong_only_rate"] == pytest.approx(1.0)
        if stats["label_no_label_rate"] == 1.0:
            assert all(s == 0.5 for sc in g.step_scores for s in sc)
    finally:
        scorer.close()


def test_hf_completions_stop_at_a_stop_string_and_report_top_logprobs(policy_path):
    from actors.hf_engine import HFEngine
    engine = HFEngine(policy_path, vision=False)
    from transformers import AutoTokenizer
    ids = AutoTokenizer.from_pretrained(policy_path)("Compute 2 + 3.", add_special_tokens=False)["input_ids"]
    out = engine.complete([ids], n=3, temperature=1.0, top_p=1.0, max_new_tokens=30, stop=[" "], top_logprobs=4,
                          seeds=[0])
    assert len(out) == 1 and len(out[0]) == 3
    for c in out[0]:
        assert " " not in c.text
        assert len(c.tokens) == len(c.top_logprobs) and all(len(t) <= 4 for t in c.top_logprobs)
        assert all(max(t.values()) <= 0.0 for t in c.top_logprobs)
