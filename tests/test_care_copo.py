"""GRPO-CARE bonus (learner.algorithms.care) and COPO global advantage / gate / loss (learner.algorithms.copo):
every expected value is worked out by hand."""
import math

import numpy as np
import pytest
import torch

from cluster.config import ConfigError, load_config
from data.trajectory import Sample, TrajectoryGroup
from learner.algorithms.base import get_algorithm
from learner.algorithms.care import CARE, CareBonus, CareConfig, care_bonus
from learner.algorithms.copo import (COPO, COPO_MODES, answer_class_labels, answer_entropy, copo_gate,
                                     copo_global_advantage, copo_local_weight, dual_clip)
from learner.algorithms.grpo import GRPO, group_normalized
from learner.algorithms.pipeline import AlgorithmPipeline
from learner.losses import aggregate, clipped_surrogate
from rewards.canonical import canonical_answer


def algorithm_cfg(*overrides):
    return load_config(None, list(overrides)).algorithm


def make_group(gid, total, accuracy, p=None, classes=None):
    samples = [Sample([5, 6], [-1.0, -1.0], "", "stop", 0) for _ in total]
    g = TrajectoryGroup(gid, gid, {}, [1, 2, 3], samples, 0)
    acc = np.asarray(accuracy, dtype=float)
    g.rewards = {"total": np.asarray(total, dtype=float), "accuracy": acc, "accuracy_reward": acc}
    g.answer_likelihood = None if p is None else np.asarray(p, dtype=float)
    g.answer_classes = list(classes) if classes is not None else [""] * len(total)
    return g


# ---- care_bonus ---------------------------------------------------------------------------------------------
def test_care_all_correct_group():
    # p clamped to [0.9, 0.8, 0.95, 0.7]; H = all; tau = 3.35 / 4 = 0.8375 -> samples 0 and 2 confident
    b = care_bonus([[1.0, 1.0, 1.0, 1.0]], [[0.9, 0.8, 0.99, 0.7]])
    np.testing.assert_allclose(b, [[0.5, 0.0, 0.5, 0.0]])


def test_care_all_wrong_group_has_empty_high_set():
    # acc > 0.1 fails everywhere -> H empty -> no bonus (no NaN from tau)
    b = care_bonus([[0.0, 0.0, 0.0, 0.0]], [[0.9, 0.1, 0.5, 0.95]])
    np.testing.assert_array_equal(b, np.zeros((1, 4)))


def test_care_tie_at_threshold_gets_bonus():
    # mean acc 0.75 -> H = {0, 1, 2}; tau = (0.4 + 0.6 + 0.8) / 3 = 0.6; p_1 == tau qualifies; sample 3 not in H
    b = care_bonus([[1.0, 1.0, 1.0, 0.0]], [[0.4, 0.6, 0.8, 0.9]])
    np.testing.assert_allclose(b, [[0.0, 0.5, 0.5, 0.0]])


def test_care_margin_admits_one_more():
    # tau = (0.58 + 0.6 + 0.62) / 3 = 0.6; margin 0: 0.58 < 0.6 out; margin 0.05: 0.58 >= 0.55 in
    acc, p = [[1.0, 1.0, 1.0, 0.0]], [[0.58, 0.6, 0.62, 0.9]]
    np.testing.assert_allclose(care_bonus(acc, p), [[0.0, 0.5, 0.5, 0.0]])
    np.testing.assert_allclose(care_bonus(acc, p, margin=0.05), [[0.5, 0.5, 0.5, 0.0]])


def test_care_upper_bound_clamp_changes_who_qualifies():
    acc, p = [[1.0, 1.0]], [[0.99, 0.9]]
    # no clamp: tau = 0.945 -> only sample 0
    np.testing.assert_allclose(care_bonus(acc, p, upper_bound=1.0), [[0.5, 0.0]])
    # default 0.95: p = [0.95, 0.9], tau = 0.925 -> only sample 0
    np.testing.assert_allclose(care_bonus(acc, p), [[0.5, 0.0]])
    # clamp 0.9: p = [0.9, 0.9], tau = 0.9 -> both
    np.testing.assert_allclose(care_bonus(acc, p, upper_bound=0.9), [[0.5, 0.5]])


def test_care_groups_are_independent_and_bonus_scales_with_accuracy():
    acc = [[0.8, 0.4, 0.05, 0.6], [0.3, 0.3, 0.2, 0.2]]
    p = [[0.7, 0.9, 0.9, 0.5], [0.5, 0.6, 0.9, 0.9]]
    # g0: mean 1.85/4 = 0.4625 -> H = {0, 3}; tau = (0.7 + 0.5)/2 = 0.6 -> sample 0: 0.5 * 0.8 = 0.4
    # g1: mean 0.25 -> H = {0, 1}; tau = 0.55 -> sample 1: 0.5 * 0.3 = 0.15
    # (a batch-wide mean, 2.85/8 = 0.35625, would empty g1's H)
    expected = [[0.4, 0.0, 0.0, 0.0], [0.0, 0.15, 0.0, 0.0]]
    np.testing.assert_allclose(care_bonus(acc, p), expected)
    np.testing.assert_allclose(care_bonus(acc[1:], p[1:]), expected[1:])
    # tensors are read as float64 numpy (the advantage stage is numpy)
    out = care_bonus(torch.tensor(acc), torch.tensor(p))
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_care_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same \\[groups, G\\]"):
        care_bonus([[1.0, 0.0]], [[0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="same \\[groups, G\\]"):
        care_bonus([1.0, 0.0], [0.5, 0.5])


# ---- CARE: a NaN likelihood means no findable answer span ---------------------------------------------------
def test_care_nan_likelihood_is_out_of_the_high_set_and_tau():
    # acc [1, 1, 1, 0], p [nan, 0.6, 0.8, 0.9]: mean acc 0.75; H = {i known, acc_i > 0.1, acc_i >= 0.75} = {1, 2}
    # tau = (0.6 + 0.8) / 2 = 0.7 -> sample 1: 0.6 < 0.7 no; sample 2: 0.8 >= 0.7 bonus 0.5 * 1; sample 3 not in H
    # (were NaN in H, tau would be NaN and nobody would get a bonus)
    b = care_bonus([[1.0, 1.0, 1.0, 0.0]], [[math.nan, 0.6, 0.8, 0.9]])
    np.testing.assert_array_equal(b, [[0.0, 0.0, 0.5, 0.0]])


def test_care_all_nan_group_gets_no_bonus_and_no_nan():
    b = care_bonus([[1.0, 0.0, 1.0, 0.0]], [[math.nan] * 4])
    np.testing.assert_array_equal(b, np.zeros((1, 4)))


def test_care_bonus_term_metrics_count_missing_spans():
    # group A: as above -> bonus [0, 0, 0.5, 0]; group B: acc [1, 0, 1, 0], every p NaN -> no bonus
    groups = [make_group("A", [1, 1, 1, 0], [1, 1, 1, 0], [math.nan, 0.6, 0.8, 0.9]),
              make_group("B", [1, 0, 1, 0], [1, 0, 1, 0], [math.nan] * 4)]
    bonus, metrics = CareBonus(CareConfig())(groups)
    np.testing.assert_array_equal(bonus, [[0, 0, 0.5, 0], [0, 0, 0, 0]])
    # bonus_rate 1/8; bonus_mean 0.5/8 = 0.0625; likelihood mean over the 3 known = 2.3/3; no span 5 of 8
    assert metrics == {"care/bonus_rate": 1 / 8, "care/bonus_mean": 0.0625,
                       "care/answer_likelihood_mean": pytest.approx(2.3 / 3), "care/no_span_rate": 5 / 8}
    # group A alone: no_span_rate 1/4, bonus_rate 1/4, likelihood mean (0.6 + 0.8 + 0.9) / 3 = 0.766667
    _, metrics = CareBonus(CareConfig())(groups[:1])
    assert metrics["care/no_span_rate"] == 0.25 and metrics["care/bonus_rate"] == 0.25
    assert metrics["care/answer_likelihood_mean"] == pytest.approx(0.766667, abs=1e-6)

    # through the care pipeline: A's reward r + r^c = [1, 1, 1.5, 0]: mean 0.875, dev [.125, .125, .625, -.875],
    # unbiased var = (0.015625 * 2 + 0.390625 + 0.765625) / 3 = 0.395833, std 0.629153; eps 1e-4
    # B unchanged: [1, 0, 1, 0] -> +-0.5 / (sqrt(1/3) + 1e-4)
    adv = AlgorithmPipeline(algorithm_cfg("algorithm.advantage=care")).advantages(groups)
    np.testing.assert_allclose(adv.sample[0], np.array([0.125, 0.125, 0.625, -0.875]) / (0.629153 + 1e-4),
                               rtol=1e-6)
    np.testing.assert_allclose(adv.sample[1], np.array([1, -1, 1, -1]) * 0.5 / (math.sqrt(1 / 3) + 1e-4))
    assert np.isfinite(adv.sample).all() and all(math.isfinite(v) for v in adv.metrics.values())
    assert adv.metrics["care/no_span_rate"] == 5 / 8


def test_care_batch_without_any_span_has_finite_advantages():
    groups = [make_group("B", [1, 0, 1, 0], [1, 0, 1, 0], [math.nan] * 4)]
    adv = AlgorithmPipeline(algorithm_cfg("algorithm.advantage=care")).advantages(groups)
    np.testing.assert_allclose(adv.sample[0], np.array([1, -1, 1, -1]) * 0.5 / (math.sqrt(1 / 3) + 1e-4))
    assert adv.metrics["care/no_span_rate"] == 1.0 and adv.metrics["care/bonus_rate"] == 0.0


def test_care_batch_without_any_span_logs_no_nan_metric():
    groups = [make_group("B", [1, 0, 1, 0], [1, 0, 1, 0], [math.nan] * 4)]
    adv = AlgorithmPipeline(algorithm_cfg("algorithm.advantage=care")).advantages(groups)
    assert all(math.isfinite(v) for v in adv.metrics.values()), adv.metrics
    assert "care/answer_likelihood_mean" not in adv.metrics and adv.metrics["care/no_span_rate"] == 1.0


def test_care_algorithm_is_grpo_of_reward_plus_bonus_with_eps_1e4():
    cfg = algorithm_cfg("algorithm.advantage=care")
    assert get_algorithm("care") is CARE and issubclass(CARE, GRPO)
    pipe = AlgorithmPipeline(cfg)
    assert pipe.algorithm.eps == 1e-4 and cfg.care_on
    # bonus as in the tie case = [[0, 0.5, 0.5, 0]] -> rewards + bonus = [[1, 1.5, 1.5, 0]] -> grpo, eps 1e-4
    # mean 1, dev [0, .5, .5, -1], unbiased var = 1.5 / 3 = 0.5, std 0.707107
    groups = [make_group("T", [1, 1, 1, 0], [1, 1, 1, 0], [0.4, 0.6, 0.8, 0.9])]
    adv = pipe.advantages(groups)
    np.testing.assert_allclose(adv.sample, group_normalized(np.array([[1.0, 1.5, 1.5, 0.0]]), eps=1e-4))
    np.testing.assert_allclose(adv.sample, [np.array([0, 0.5, 0.5, -1]) / (math.sqrt(0.5) + 1e-4)])
    groups[0].answer_likelihood = None
    with pytest.raises(ValueError, match="no reference answer likelihood"):
        pipe.advantages(groups)


# ---- answer_entropy -----------------------------------------------------------------------------------------
def test_entropy_identical_and_distinct():
    assert answer_entropy(["42"] * 4) == 0.0
    assert answer_entropy(["1", "2", "3", "4"]) == pytest.approx(2.0)  # log2 4
    assert answer_entropy([]) == 0.0


def test_entropy_counts_classes_as_given():
    # no canonicalisation in the learner any more (the reward child does it): the strings are the classes
    # raw: "0.5", "1/2", " 1/2 " are 3 classes -> log2 3 = 1.584963; canonical: all "1/2" -> 0
    raw = ["0.5", "1/2", " 1/2 "]
    assert answer_entropy(raw) == pytest.approx(math.log2(3))
    assert answer_entropy([canonical_answer(a) for a in raw]) == 0.0
    # "Yes"/"yes" and "x+1"/"1 + x": 2 classes raw (1 bit), 1 class canonical (0)
    for pair in (["Yes", "yes"], ["x+1", "1 + x"]):
        assert answer_entropy(pair) == pytest.approx(1.0)
        assert answer_entropy([canonical_answer(a) for a in pair]) == 0.0


def test_entropy_mixed_and_empty_class():
    # canonical ["a", "a", "b", "c"]: p = [1/2, 1/4, 1/4]: 0.5*1 + 0.25*2 + 0.25*2 = 1.5 bits
    assert answer_entropy([canonical_answer(a) for a in ["a", "A", "b", "c"]]) == pytest.approx(1.5)
    # raw ["a", "A", "b", "c"]: 4 classes -> 2 bits
    assert answer_entropy(["a", "A", "b", "c"]) == pytest.approx(2.0)
    # canonical "" is its own class: ["", "", "x", "x"] -> p = [1/2, 1/2] -> 1 bit
    assert answer_entropy([canonical_answer(a) for a in ["", " ", "x", "x"]]) == pytest.approx(1.0)
    # raw ["", " ", "x", "x"]: p = [1/4, 1/4, 1/2] -> 1.5 bits
    assert answer_entropy(["", " ", "x", "x"]) == pytest.approx(1.5)


def test_entropy_unsafe_strings_stay_exact():
    # never evaluated by the canonicaliser: a call, a tower of powers, a huge exponent, long text -> 4 classes
    unsafe = ["exit()", "9^9^9^9", "2^100000", "the answer is " * 10]
    assert answer_entropy([canonical_answer(a) for a in unsafe]) == pytest.approx(2.0)


# ---- copo_global_advantage / copo_gate ----------------------------------------------------------------------
CORRECT = [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
ANSWERS = [["5", "5", "5", "5"], ["5", "5", "6", "7"], ["1", "2", "3", "4"]]  # H = 0, 1.5, 2 bits


def test_copo_global_advantage_without_discount():
    # R = [1, 0.5, 0]; mean 0.5; dev [0.5, 0, -0.5]; std (ddof 1) = sqrt((0.25 + 0 + 0.25) / 2) = 0.5
    # -> A = dev / std = [1, 0, -1]
    adv, ent = copo_global_advantage(CORRECT, ANSWERS, eps=0.0)
    np.testing.assert_allclose(adv, [1.0, 0.0, -1.0])
    np.testing.assert_allclose(ent, [0.0, 1.5, 2.0])


def test_copo_global_advantage_with_discount():
    # lambda = (1 - 1/4) / log2 4 = 0.375; kappa = [1, 1 - 0.5625, 1 - 0.75] = [1, 0.4375, 0.25]
    # R = [1, 0.5 * 0.4375, 0] = [1, 0.21875, 0]; mean = 1.21875 / 3 = 0.40625
    # dev = [0.59375, -0.1875, -0.40625]; var = (0.3525390625 + 0.03515625 + 0.1650390625) / 2 = 0.2763671875
    adv, _ = copo_global_advantage(CORRECT, ANSWERS, entropy_discount=True, eps=0.0)
    np.testing.assert_allclose(adv, np.array([0.59375, -0.1875, -0.40625]) / math.sqrt(0.2763671875))


def test_copo_global_advantage_constant_and_single_group_are_zero():
    adv, _ = copo_global_advantage([[1, 0], [0, 1]], [["a", "b"], ["a", "b"]])  # R = [0.5, 0.5]
    np.testing.assert_array_equal(adv, [0.0, 0.0])
    adv, _ = copo_global_advantage([[1, 0]], [["a", "b"]])
    np.testing.assert_array_equal(adv, [0.0])
    # a tensor of 0/1 is read as numpy: same [1, 0, -1] as above
    adv, ent = copo_global_advantage(torch.tensor(CORRECT, dtype=torch.float32), ANSWERS, eps=0.0)
    assert isinstance(adv, np.ndarray) and isinstance(ent, np.ndarray)
    np.testing.assert_allclose(adv, [1.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="classes must be \\[groups\\]\\[G\\]"):
        copo_global_advantage(CORRECT, ANSWERS[:2])


def test_copo_gate():
    assert copo_gate(1.0) == pytest.approx(0.5)  # sigmoid(0)
    # sigmoid(5 * 0.5) = 1 / (1 + e^-2.5) = 1 / 1.0820850 = 0.9241418
    assert copo_gate(1.5) == pytest.approx(0.9241418, abs=1e-7)
    out = copo_gate(np.array([1.0, 0.0]), k=5.0, b=1.0)  # sigmoid(-5) = 0.0066929
    np.testing.assert_allclose(out, [0.5, 0.0066929], atol=1e-7)
    # no overflow far out: sigmoid(5 * 1000) = 1, sigmoid(-5 * 1000) = 0
    np.testing.assert_array_equal(copo_gate(np.array([1001.0, -999.0])), [1.0, 0.0])


# ---- answer classes: canonical (default) or released (raw strings, each unreadable answer its own class) --------
def released_groups():
    # X: raw ["7", None, None, "7"], canonical ["7", "", "", "7"], correct [1, 0, 0, 1]
    # Y: raw ["3"] * 4, canonical the same, all wrong
    x = make_group("X", [1, 0, 0, 1], [1, 0, 0, 1], classes=["7", "", "", "7"])
    y = make_group("Y", [0, 0, 0, 0], [0, 0, 0, 0], classes=["3"] * 4)
    x.answer_raw, y.answer_raw = ["7", None, None, "7"], ["3"] * 4
    return [x, y]


def test_released_classes_make_each_unreadable_answer_its_own_class():
    groups = released_groups()
    labels = answer_class_labels(groups, "released")
    assert labels[0][0] == labels[0][3] == "7" and len({labels[0][1], labels[0][2], "7"}) == 3
    # released X: classes {7: 2, u1: 1, u2: 1} -> p = [1/2, 1/4, 1/4] -> H = 0.5 * 1 + 2 * 0.25 * 2 = 1.5 bits
    # canonical X: {7: 2, "": 2} -> H = 1 bit; Y: one class -> 0 either way
    assert [answer_entropy(a) for a in labels] == [pytest.approx(1.5), 0.0]
    assert [answer_entropy(a) for a in answer_class_labels(groups, "canonical")] == [pytest.approx(1.0), 0.0]


def test_copo_algorithm_reads_the_configured_classes():
    groups = released_groups()
    # gates sigmoid(5 (H - 1)): released X 1.5 -> sigmoid(2.5) = 0.9241418; canonical X 1.0 -> 0.5; Y -> sigmoid(-5)
    # entropy mean: released (1.5 + 0) / 2 = 0.75, canonical (1 + 0) / 2 = 0.5
    for which, h, gate in (("released", 1.5, 0.9241418), ("canonical", 1.0, 0.5)):
        cfg = algorithm_cfg("algorithm.advantage=copo", f"algorithm.copo.answer_classes={which}")
        adv = AlgorithmPipeline(cfg).advantages(groups)
        np.testing.assert_allclose(adv.loss_inputs["gate"], [[gate] * 4, [0.0066929] * 4], atol=1e-7)
        assert adv.metrics["copo/answer_entropy_mean"] == pytest.approx(h / 2)
        # R = [0.5, 0]: A^G = +-0.25 / (std([0.5, 0], ddof 1) = 0.353553 + 1e-6) = +-0.707105, either way
        np.testing.assert_allclose(adv.loss_inputs["global_adv"][:, 0], [0.707105, -0.707105], atol=1e-6)


def test_released_classes_without_raw_answers_is_a_clear_error():
    groups = released_groups()
    cfg = algorithm_cfg("algorithm.advantage=copo", "algorithm.copo.answer_classes=released")
    groups[1] = make_group("Y", [0, 0, 0, 0], [0, 0, 0, 0], classes=["3"] * 4)   # answer_raw never recorded
    assert groups[1].answer_raw == []    # the field's empty default
    with pytest.raises(ValueError, match="released needs the reward actor.s answer_raw of groups \\[.Y.\\]"):
        AlgorithmPipeline(cfg).advantages(groups)
    groups[1].answer_raw = ["3"]         # the wrong length is refused the same way
    with pytest.raises(ValueError, match="answer_raw of groups \\[.Y.\\]"):
        AlgorithmPipeline(cfg).advantages(groups)
    with pytest.raises(ConfigError, match="copo.answer_classes"):
        load_config(None, ["algorithm.copo.answer_classes=raw"])


# ---- dual_clip ----------------------------------------------------------------------------------------------
def test_dual_clip_caps_negative_advantage():
    lp = torch.tensor([[2.0, math.log(1.5)]])  # rho = [e^2 = 7.389, 1.5]
    old = torch.zeros(1, 2)
    # A = -1: max(7.389, 1.2) = 7.389 -> min(., 3) = 3 (capped: no gradient); rho 1.5: max(1.5, 1.2) = 1.5 < 3 stays
    loss, clipped = dual_clip(lp, old, torch.tensor([-1.0]), 0.2, 0.2, 3.0)
    np.testing.assert_allclose(loss, [[3.0, 1.5]], rtol=1e-6)
    assert clipped.tolist() == [[True, False]]
    # A = +1: max(-7.389, -1.2) = -1.2; max(-1.5, -1.2) = -1.2 -- identical to the plain clipped surrogate
    pos, clipped = dual_clip(lp, old, torch.tensor([1.0]), 0.2, 0.2, 3.0)
    np.testing.assert_allclose(pos, [[-1.2, -1.2]], rtol=1e-6)
    torch.testing.assert_close(pos, clipped_surrogate(lp, old, torch.tensor([1.0]))[0])
    assert clipped.tolist() == [[True, True]]
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        dual_clip(lp, old, torch.tensor([1.0]), 0.2, 0.2, 1.0)


# ---- COPO.token_loss ----------------------------------------------------------------------------------------
# 2 samples x 2 tokens, rho = [1, 1.5] on both rows.
# s0: correct 1, A^L = 0, A^G = 0.5, gate 0.25    s1: correct 0, A^L = -1, A^G = -0.5, gate 0.75
# l(A) at rho 1 = -A; at rho 1.5: A > 0 -> -1.2 A, A < 0 -> -1.5 A (cap -3A not reached)
# l(A^L): s0 [0, 0], s1 [1, 1.5];  l(A^G): s0 [-0.5, -0.6], s1 [0.5, 0.75]
LP = torch.tensor([[0.0, math.log(1.5)], [0.0, math.log(1.5)]])
OLD = torch.zeros(2, 2)
MASK = torch.ones(2, 2)
LOCAL = torch.tensor([0.0, -1.0])
INPUTS = {"global_adv": torch.tensor([0.5, -0.5]), "gate": torch.tensor([0.25, 0.75]),
          "correct": torch.tensor([1.0, 0.0])}
EXPECTED = {
    # w = [0.25, 0.75]: s0 0.75*[-0.5,-0.6]; s1 0.25*[0.5,0.75] + 0.75*[1,1.5] = [0.875, 1.3125]
    "only-soft": [[-0.375, -0.45], [0.875, 1.3125]],
    # w = [0.25*0, 0.75*1] = [0, 0.75]
    "soft-with-forced": [[-0.5, -0.6], [0.875, 1.3125]],
    # w = [0.25*1, 0.75*0] = [0.25, 0]
    "soft-with-zero": [[-0.375, -0.45], [0.5, 0.75]],
    "only-global": [[-0.5, -0.6], [0.5, 0.75]],  # w = 0
    "no-global": [[0.0, 0.0], [1.0, 1.5]],  # w = 1
    "only-forced": [[-0.5, -0.6], [1.0, 1.5]],  # w = [0, 1]
    "only-zero": [[0.0, 0.0], [0.5, 0.75]],  # w = [1, 0]
    # coef 2: s0 2*0.75*[-0.5,-0.6] = [-0.75,-0.9]; s1 2*0.25*[0.5,0.75] + 0.75*[1,1.5] = [1.0, 1.5]
    "only-soft-with-coef": [[-0.75, -0.9], [1.0, 1.5]],
}


def copo(*overrides) -> COPO:
    return get_algorithm("copo")(algorithm_cfg("algorithm.advantage=copo", *overrides))


@pytest.mark.parametrize("mode", COPO_MODES)
def test_copo_token_loss_modes(mode):
    algo = copo(f"algorithm.copo.mode={mode}", "algorithm.copo.global_loss_coef=2.0")
    per_token, stats = algo.token_loss(LP, OLD, LOCAL, MASK, INPUTS)
    np.testing.assert_allclose(per_token, EXPECTED[mode], rtol=1e-6, atol=1e-7)
    loss = aggregate(per_token, MASK, "seq-mean-token-mean")
    assert float(loss) == pytest.approx(float(np.mean(EXPECTED[mode])))  # all tokens valid, equal lengths
    assert stats["copo/gate_mean"] == pytest.approx(0.5)


def test_copo_token_loss_stats_and_unknown_mode():
    _, stats = copo("algorithm.copo.mode=only-soft").token_loss(LP, OLD, LOCAL, MASK, INPUTS)
    assert stats["copo/global_loss_share"] == pytest.approx(0.5)  # (1-w) = [0.75, 0.75, 0.25, 0.25]
    # clipped tokens: rho 1.5 with A > 0 (s0 global branch, weight 0.75); s1 at rho 1.5 is not clipped (A < 0)
    assert stats["loss/clip_fraction"] == pytest.approx(0.75 / 4)
    with pytest.raises(ConfigError, match="copo.mode"):
        load_config(None, ["algorithm.copo.mode=bogus"])
    with pytest.raises(ValueError, match="only-soft"):
        copo_local_weight("bogus", INPUTS["gate"], LOCAL, INPUTS["correct"])


def test_copo_local_weight_numpy_and_torch_agree():
    # soft-with-zero: w = gate * 1[correct != 0] = [0.25, 0]; soft-with-forced: gate * 1[A^L != 0] = [0, 0.75]
    for mode, w in (("soft-with-zero", [0.25, 0.0]), ("soft-with-forced", [0.0, 0.75])):
        t = copo_local_weight(mode, INPUTS["gate"], LOCAL, INPUTS["correct"])
        n = copo_local_weight(mode, INPUTS["gate"].numpy(), LOCAL.numpy(), INPUTS["correct"].numpy())
        assert t.dtype == torch.float32
        np.testing.assert_allclose(t.numpy(), w)
        np.testing.assert_allclose(n, w)


@pytest.mark.parametrize("mode", ["only-soft", "soft-with-forced"])
def test_zero_variance_group_still_gets_gradient_under_copo(mode):
    # group 0 is all correct -> zero GRPO advantage; R = [1, 0.5] -> A^G = [0.707, -0.707]
    # group 0's gate: sigmoid(5 * (0 - 1)) = 0.0067
    groups = [make_group("a", [1, 1], [1, 1], classes=["7", "7"]), make_group("b", [0, 1], [0, 1], classes=["3", "7"])]
    algo = copo(f"algorithm.copo.mode={mode}")
    adv = algo.advantages(groups, np.array([[1.0, 1.0], [0.0, 1.0]]))
    assert np.all(adv.sample[0] == 0.0) and adv.loss_inputs["global_adv"][0, 0] > 0
    assert adv.metrics["copo/zero_variance_with_gradient"] == 1.0
    inputs = {k: torch.tensor(np.array(v[0]), dtype=torch.float32) for k, v in adv.loss_inputs.items()}
    local = torch.as_tensor(adv.sample[0], dtype=torch.float32)
    old = torch.full((2, 3), -1.0)
    mask = torch.ones(2, 3)

    lp = old.clone().requires_grad_(True)
    per_token, _ = algo.token_loss(lp, old, local, mask, inputs)
    aggregate(per_token, mask, "seq-mean-token-mean").backward()
    assert lp.grad.abs().sum() > 0

    lp_grpo = old.clone().requires_grad_(True)
    grpo = get_algorithm("grpo")(algorithm_cfg())
    per_token, _ = grpo.token_loss(lp_grpo, old, local, mask, {})
    aggregate(per_token, mask, "seq-mean-token-mean").backward()
    assert torch.all(lp_grpo.grad == 0)


def test_canonical_classes_missing_is_a_clear_error():
    groups = released_groups()
    groups[0].answer_classes = []      # a group the reward actor never classified: no silent H = 0
    with pytest.raises(ValueError, match="answer_classes=canonical needs the reward actor's answer_classes"):
        AlgorithmPipeline(algorithm_cfg("algorithm.advantage=copo")).advantages(groups)
