"""The PRM scoring stage without Ray: tool-only step scores placed on tokens, and the generative path on a tiny
model served by the HF engine (it never writes a label, so every step falls back to 0.5 and is counted)."""
import math

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


def test_generative_prm_path_runs_on_the_hf_engine(policy_path):
    scorer = _scorer(policy_path, model=policy_path, max_new_tokens=6, top_logprobs=3)
    try:
        g = _group(scorer.policy_tokenizer, [RESPONSE, "1 + 1 = 2"])
        scorer.score(g)
        assert [len(s) for s in g.step_scores] == [3, 1]
        assert scorer.stats()["steps_per_sample"] == 2.0          # (3 + 1) steps, one engine turn each, 2 samples
    finally:
        scorer.close()


class ScriptedPRM:
    """Stands in for the PRM engine: answers the turns in call order with the given completions, and keeps
    the requests it saw."""

    def __init__(self, completions):
        self.completions, self.requests = list(completions), []

    def complete(self, requests, n, temperature, max_new_tokens, top_logprobs):
        self.requests.extend(requests)
        return [[self.completions.pop(0)] for _ in requests]


def test_generative_scores_follow_the_label_log_probs_and_every_kind_is_counted(policy_path):
    from actors.generation import Completion
    sigmoid = lambda x: 1 / (1 + math.exp(-x))   # noqa: E731 - p_r / (p_r + p_w) = sigmoid(lp_r - lp_w)
    both_a = Completion("A [Right]", True, ["A", " Right"], [{}, {" Right": math.log(0.6), " Wrong": math.log(0.2)}])
    both_b = Completion("B", True, ["Wrong"], [{"Wrong": math.log(0.3), "Right": math.log(0.1)}])
    right_only = Completion("C", True, ["Right"], [{"Right": -0.1, "x": -3.0}])     # x: the floor for Wrong
    wrong_only = Completion("D", True, ["Wrong", "."], [{"Wrong": -0.2, "y": -2.2}, {".": 0.0}])
    no_label = Completion("E", True, ["Fine"], [{"Fine": -0.1}])
    neither = Completion("F", True, ["Right"], [{"Sure": -0.5, "Ok": -1.0}])       # label not among its top k
    scorer = _scorer(policy_path, aggregation="min", weight=2.0)
    # turn k of every sample with a step k goes out together: k=0 -> s0, s1, s2; k=1 -> s0, s1; k=2 -> s0
    scorer.judge = ScriptedPRM([both_a, both_b, right_only, wrong_only, no_label, neither])
    try:
        g = _group(scorer.policy_tokenizer, [RESPONSE, "1 + 1 = 2\n\n2 + 2 = 4", "3 + 3 = 6"])
        scorer.score(g)
        stats = scorer.stats()
        requests = scorer.judge.requests
    finally:
        scorer.close()
    expected = [[0.75, sigmoid(-2.0), 0.5], [0.25, 0.5], [sigmoid(2.9)]]     # 0.6/0.8, 0.1/0.4
    for got, want in zip(g.step_scores, expected):
        np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(g.rewards["process"], [sigmoid(-2.0), 0.25, sigmoid(2.9)])      # min per sample
    np.testing.assert_allclose(g.rewards["total"], 2.0 + 2.0 * np.array([sigmoid(-2.0), 0.25, sigmoid(2.9)]))
    assert {k: v * 6 for k, v in stats.items() if k.startswith("label_")} == pytest.approx(
        {"label_both_rate": 2, "label_right_only_rate": 1, "label_wrong_only_rate": 1, "label_neither_rate": 1,
         "label_no_label_rate": 1})
    # the PRM sees its own earlier turns: sample 0's step-2 request holds its step-1 output, sample 1's not
    assert len(requests) == 6
    assert [m["content"] for m in requests[3]["messages"] if m["role"] == "assistant"] == ["A [Right]"]
    assert [m["content"] for m in requests[4]["messages"] if m["role"] == "assistant"] == ["B"]
    assert [m["content"] for m in requests[5]["messages"] if m["role"] == "assistant"] == ["A [Right]", "D"]


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
