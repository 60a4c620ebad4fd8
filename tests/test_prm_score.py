"""GroundedPRM step scores, their aggregation, token placement and process advantages: hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from cluster.config import ConfigError, load_config
from learner.algorithms.process import ProcessAdvantage, ProcessConfig, process_advantages
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
    # R = [1, 0, 1]: mean 2/3, deviations [1/3, -2/3, 1/3], sum of squares 6/9 = 2/3
    # unbiased (ddof 1): var = (2/3) / 2 = 1/3, std = 1/sqrt(3) = 0.57735 -> r~ = [1/sqrt3, -2/sqrt3, 1/sqrt3]
    #   (the old ddof-0 std sqrt(2/9) = 0.4714 gave r~ = [0.7071, -1.4142, 0.7071])
    # A: tokens 0-1 get r~_1 + r~_2 = -1/sqrt3, tokens 2-3 get r~_2 = -2/sqrt3; B: tokens 0-2 get 1/sqrt3.
    a, b = process_advantages([[1.0, 0.0], [1.0]], [[1, 3], [2]], [4, 3], eps=0.0)
    h = 1 / math.sqrt(3)
    np.testing.assert_allclose(a, [-h, -h, -2 * h, -2 * h], rtol=1e-6)
    np.testing.assert_allclose(b, [h, h, h], rtol=1e-6)


def test_process_advantages_unbiased_std_clamped_steps_and_stepless_samples():
    # A: steps [0.2, 1.0] at tokens [1, 3], 4 tokens; B: steps [0.2, 0.2] at tokens [0, 5], 3 tokens (5 is past the
    # end: placed on the last token, 2); C: no steps, 2 tokens.
    # R = [0.2, 1.0, 0.2, 0.2]: mean 1.6 / 4 = 0.4, deviations [-0.2, 0.6, -0.2, -0.2], squares 0.04 * 3 + 0.36 = 0.48
    # ddof 1: var = 0.48 / 3 = 0.16, std = 0.4 -> r~ = [-0.5, 1.5, -0.5, -0.5]
    #   (ddof 0 would be std sqrt(0.12) = 0.3464 -> r~ = [-0.577, 1.732, ...])
    # A: tokens 0-1: -0.5 + 1.5 = 1.0; tokens 2-3: 1.5            -> [1, 1, 1.5, 1.5]
    # B: token 0: -0.5 (step 1) - 0.5 (step 2); tokens 1-2: -0.5  -> [-1, -0.5, -0.5]
    # C: [0, 0]
    a, b, c = process_advantages([[0.2, 1.0], [0.2, 0.2], []], [[1, 3], [0, 5], []], [4, 3, 2], eps=0.0)
    np.testing.assert_allclose(a, [1.0, 1.0, 1.5, 1.5], rtol=1e-12)
    np.testing.assert_allclose(b, [-1.0, -0.5, -0.5], rtol=1e-12)
    np.testing.assert_array_equal(c, [0.0, 0.0])
    # the default eps 1e-6: r~ = dev / 0.400001 -> A's last tokens 0.6 / 0.400001 = 1.4999963
    a, _, _ = process_advantages([[0.2, 1.0], [0.2, 0.2], []], [[1, 3], [0, 5], []], [4, 3, 2])
    assert a[-1] == pytest.approx(0.6 / 0.400001, rel=1e-12)


def test_process_advantages_zero_when_every_step_scores_the_same():
    out = process_advantages([[1.0, 1.0], [1.0]], [[0, 2], [1]], [3, 2])
    assert all(np.all(x == 0) for x in out)
    assert [len(x) for x in out] == [3, 2]
    # a single step reward in the whole group has no std (ddof 1 needs two): zeros, not NaN
    out = process_advantages([[0.7], []], [[0], []], [2, 1])
    assert [x.tolist() for x in out] == [[0.0, 0.0], [0.0]]


def _prm_group():
    from data.trajectory import Sample, TrajectoryGroup
    samples = [Sample([5, 6, 7, 8], [-1.0] * 4, "a", "stop", 0), Sample([5, 6, 7], [-1.0] * 3, "b", "stop", 0)]
    return TrajectoryGroup("g", "p", {"type": "math"}, [1, 2], samples, 0,
                           rewards={"total": np.array([1.0, 0.0]), "accuracy": np.array([1.0, 0.0])},
                           step_scores=[[1.0, 0.0], [1.0]], step_tokens=[[1, 3], [2]])


def test_process_term_scales_by_coef():
    # ProcessAdvantage = coef x process_advantages (see the first hand-computed case): 0.5 x [-h, -h, -2h, -2h]
    h = 1 / math.sqrt(3)
    (a, b), = ProcessAdvantage(ProcessConfig(coef=0.5, eps=0.0))([_prm_group()])
    np.testing.assert_allclose(a, [-0.5 * h, -0.5 * h, -h, -h], rtol=1e-12)
    np.testing.assert_allclose(b, [0.5 * h] * 3, rtol=1e-12)


def test_token_advantages_reach_the_loss_as_a_per_token_tensor():
    from learner.algorithms.pipeline import AlgorithmPipeline
    from learner.batch import micro_batch, sample_rows
    g = _prm_group()
    cfg = load_config(None, ["algorithm.advantage=dr_grpo", "algorithm.process.coef=0.5", "prm.enabled=true"])
    pipe = AlgorithmPipeline(cfg.algorithm)
    adv = pipe.advantages([g])
    mb = micro_batch(sample_rows([g], adv), "cpu")
    h = 1 / math.sqrt(3)
    # outcome (Dr. GRPO): [+0.5, -0.5]; plus 0.5 x the process advantages above (eps 1e-6 is negligible);
    # row 1's padded position keeps the sequence advantage -0.5 (masked out of the loss)
    expected = torch.tensor([[0.5 - 0.5 * h, 0.5 - 0.5 * h, 0.5 - h, 0.5 - h],
                             [-0.5 + 0.5 * h, -0.5 + 0.5 * h, -0.5 + 0.5 * h, -0.5]])
    assert mb.advantages.shape == (2, 4)
    torch.testing.assert_close(mb.advantages, expected, rtol=1e-5, atol=1e-5)
    assert mb.mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match="no PRM step scores"):
        g.step_scores = None
        pipe.advantages([g])


def test_process_coef_config_is_checked():
    with pytest.raises(ConfigError, match="set prm.enabled=true"):
        load_config(None, ["algorithm.process.coef=0.5"])
    with pytest.raises(ConfigError, match="COPO's gate reads sequence-level"):
        load_config(None, ["algorithm.advantage=copo", "algorithm.process.coef=0.5", "prm.enabled=true"])
    with pytest.raises(ConfigError, match="algorithm.process.coef"):
        load_config(None, ["algorithm.process.coef=-1", "prm.enabled=true"])
    with pytest.raises(ConfigError, match="unknown key 'prm.step_advantage_coef'"):
        load_config(None, ["prm.step_advantage_coef=0.5"])      # the old key is gone, by name


def test_auroc_by_hand():
    from rewards.prm.score import auroc
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    # pos {0.5, 0.9}, neg {0.5, 0.1}: pairs (0.5,0.5) tie 1/2, (0.5,0.1) 1, (0.9,0.5) 1, (0.9,0.1) 1 -> 3.5 / 4
    assert auroc([0.5, 0.9, 0.5, 0.1], [True, True, False, False]) == 0.875
    assert auroc([0.5] * 4, [True, False, True, False]) == 0.5          # a constant scorer is chance
    assert math.isnan(auroc([0.3, 0.4], [True, True]))
