"""GroundedPRM step scores, their aggregation, token placement and process advantages: hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from learner.advantages import process_advantages
from rewards.prm.score import (
    aggregate_step_scores,
    generated_step_score,
    label_probability,
    step_end_tokens,
    tool_step_score,
)


def test_label_probability_both_labels():
    top = {"Right": math.log(0.6), "Wrong": math.log(0.2), "x": math.log(0.1)}
    s, how = label_probability(top)
    assert how == "both" and s == pytest.approx(0.6 / 0.8)


def test_label_probability_one_label_uses_the_smallest_top_k_logprob_for_the_other():
    top = {" Right": math.log(0.5), "a": math.log(0.3), "b": math.log(0.05)}
    s, how = label_probability(top)
    assert how == "right_only" and s == pytest.approx(0.5 / 0.55)
    s, how = label_probability({"Wrong": math.log(0.7), "c": math.log(0.1)})
    assert how == "wrong_only" and s == pytest.approx(0.1 / 0.8)


def test_label_probability_without_labels_is_one_half():
    assert label_probability({"a": -1.0, "b": -2.0}) == (0.5, "neither")


def test_label_probability_custom_label_words():
    s, how = label_probability({"+": math.log(0.3), "-": math.log(0.1)}, right="+", wrong="-")
    assert how == "both" and s == pytest.approx(0.75)


def test_generated_step_score_reads_the_last_label_position():
    tokens = ["I", " think", " Wrong", " no", ".", " conclusion", " is", " [", "Right", "]"]
    tops = [{} for _ in tokens]
    tops[2] = {"Wrong": math.log(0.9), "Right": math.log(0.1)}
    tops[8] = {"Right": math.log(0.8), "Wrong": math.log(0.2)}
    assert generated_step_score(tokens, tops) == (pytest.approx(0.8), "both")
    assert generated_step_score(["no", "label"], [{}, {}]) == (0.5, "no_label")


def test_tool_step_scores():
    assert tool_step_score("verified") == 1.0
    assert tool_step_score("refuted") == 0.0
    assert tool_step_score("not_checkable", neutral=0.5) == 0.5
    assert tool_step_score("timeout", neutral=0.3) == 0.3


def test_aggregations():
    scores = [0.9, 0.2, 0.6]
    assert aggregate_step_scores(scores, "min") == 0.2
    assert aggregate_step_scores(scores, "mean") == pytest.approx(1.7 / 3)
    assert aggregate_step_scores(scores, "last") == 0.6
    assert aggregate_step_scores(scores, "product") == pytest.approx(0.108)
    assert aggregate_step_scores([], "min") == 0.0
    with pytest.raises(ValueError, match="unknown step aggregation"):
        aggregate_step_scores(scores, "max")


def test_step_end_tokens_place_each_step_on_the_token_holding_its_last_character():
    token_ends = [3, 5, 9, 12]          # token k covers characters [ends[k-1], ends[k])
    assert step_end_tokens([5, 11, 12], token_ends) == [1, 3, 3]
    assert step_end_tokens([4], token_ends) == [1]
    assert step_end_tokens([40], token_ends) == [3]     # past the tokens: the last one
    assert step_end_tokens([2], []) == [0]


def test_process_advantages_hand_computed():
    # sample A: step scores [1, 0] ending at tokens [1, 3] (4 tokens); sample B: [1] at token 2 (3 tokens).
    # R = [1, 0, 1]: mean 2/3, std sqrt(2/9) = 0.4714 -> r~ = [0.7071, -1.4142, 0.7071].
    # A: tokens 0-1 get r~_1 + r~_2 = -0.7071, tokens 2-3 get r~_2 = -1.4142; B: tokens 0-2 get 0.7071.
    a, b = process_advantages([[1.0, 0.0], [1.0]], [[1, 3], [2]], [4, 3], eps=0.0)
    h = 1 / math.sqrt(2)
    np.testing.assert_allclose(a, [-h, -h, -2 * h, -2 * h], rtol=1e-6)
    np.testing.assert_allclose(b, [h, h, h], rtol=1e-6)


def test_process_advantages_zero_when_every_step_scores_the_same():
    out = process_advantages([[1.0, 1.0], [1.0]], [[0, 2], [1]], [3, 2])
    assert all(np.all(x == 0) for x in out)
    assert [len(x) for x in out] == [3, 2]


def test_token_advantages_reach_the_loss_as_a_per_token_tensor():
    from data.trajectory import Sample, TrajectoryGroup
    from learner.batch import collate, compute_advantages, flatten
    samples = [Sample([5, 6, 7, 8], [-1.0] * 4, "a", "stop", 0), Sample([5, 6, 7], [-1.0] * 3, "b", "stop", 0)]
    g = TrajectoryGroup("g", "p", {"type": "math"}, [1, 2], samples, 0,
                        rewards={"total": np.array([1.0, 0.0]), "accuracy": np.array([1.0, 0.0])},
                        step_scores=[[1.0, 0.0], [1.0]], step_tokens=[[1, 3], [2]])
    algo = {"advantage": "dr_grpo", "prm_step_coef": 0.5}
    adv = compute_advantages([g], algo)
    batch = collate(flatten([g], adv), pad_id=0)
    h = 1 / math.sqrt(2)
    # outcome (Dr. GRPO): [+0.5, -0.5]; plus 0.5 x the process advantages above (eps 1e-6 is negligible)
    expected = torch.tensor([[0.5 - 0.5 * h, 0.5 - 0.5 * h, 0.5 - h, 0.5 - h],
                             [-0.5 + 0.5 * h, -0.5 + 0.5 * h, -0.5 + 0.5 * h, -0.5]])
    assert batch["advantages"].shape == (2, 4)
    torch.testing.assert_close(batch["advantages"][0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch["advantages"][1, :3], expected[1, :3], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no PRM step scores"):
        g.step_scores = None
        compute_advantages([g], algo)
