"""GRPO-CARE bonus and COPO global advantage / gate / loss: every expected value is worked out by hand."""
import math

import numpy as np
import pytest
import torch

from learner.advantages import (
    answer_entropy,
    care_advantage,
    care_bonus,
    copo_gate,
    copo_global_advantage,
    get_advantage_estimator,
    group_normalized,
)
from learner.losses import (
    COPO_MODES,
    clipped_surrogate,
    copo_loss,
    copo_per_token_loss,
    dual_clip_loss,
    policy_loss,
)


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
    out = care_bonus(torch.tensor(acc), torch.tensor(p))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_care_estimator_registered():
    assert get_advantage_estimator("care") is care_advantage
    # bonus as in the tie case = [[0, 0.5, 0.5, 0]] -> rewards + bonus = [[1, 1.5, 1.5, 0]] -> grpo, eps 1e-4
    rewards, acc, p = [[1.0, 1.0, 1.0, 0.0]], [[1.0, 1.0, 1.0, 0.0]], [[0.4, 0.6, 0.8, 0.9]]
    expected = group_normalized(np.array([[1.0, 1.5, 1.5, 0.0]]), eps=1e-4)
    np.testing.assert_allclose(care_advantage(rewards, accuracy=acc, answer_likelihood=p), expected)
    with pytest.raises(ValueError):
        care_advantage(rewards)


# ---- answer_entropy -----------------------------------------------------------------------------------------
def test_entropy_identical_and_distinct():
    assert answer_entropy(["42"] * 4) == 0.0
    assert answer_entropy(["1", "2", "3", "4"]) == pytest.approx(2.0)  # log2 4


def test_entropy_canonicalisation():
    assert answer_entropy(["0.5", "1/2", " 1/2 "]) == 0.0
    assert answer_entropy(["Yes", "yes"]) == 0.0
    assert answer_entropy(["x+1", "1 + x"]) == 0.0


def test_entropy_mixed_and_empty_class():
    # p = [1/2, 1/4, 1/4]: 0.5*1 + 0.25*2 + 0.25*2 = 1.5 bits
    assert answer_entropy(["a", "A", "b", "c"]) == pytest.approx(1.5)
    # "" is its own class: p = [1/2, 1/2] -> 1 bit
    assert answer_entropy(["", " ", "x", "x"]) == pytest.approx(1.0)


def test_entropy_unsafe_strings_stay_exact():
    # never evaluated: a call, a tower of powers, a huge exponent, long text
    assert answer_entropy(["exit()", "9^9^9^9", "2^100000", "the answer is " * 10]) == pytest.approx(2.0)


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
    adv, ent = copo_global_advantage(torch.tensor(CORRECT, dtype=torch.float32), ANSWERS, eps=0.0)
    assert isinstance(adv, torch.Tensor) and isinstance(ent, torch.Tensor)


def test_copo_gate():
    assert copo_gate(1.0) == pytest.approx(0.5)  # sigmoid(0)
    # sigmoid(5 * 0.5) = 1 / (1 + e^-2.5) = 1 / 1.0820850 = 0.9241418
    assert copo_gate(1.5) == pytest.approx(0.9241418, abs=1e-7)
    out = copo_gate(torch.tensor([1.0, 0.0]), k=5.0, b=1.0)  # sigmoid(-5) = 0.0066929
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), [0.5, 0.0066929], atol=1e-7)


# ---- dual_clip_loss -----------------------------------------------------------------------------------------
def test_dual_clip_caps_negative_advantage():
    lp = torch.tensor([[2.0, math.log(1.5)]])  # rho = [e^2 = 7.389, 1.5]
    old = torch.zeros(1, 2)
    # A = -1: max(7.389, 1.2) = 7.389 -> min(., 3) = 3;  rho 1.5: max(1.5, 1.2) = 1.5 < 3 stays
    np.testing.assert_allclose(dual_clip_loss(lp, old, torch.tensor([-1.0])), [[3.0, 1.5]], rtol=1e-6)
    # A = +1: max(-7.389, -1.2) = -1.2; max(-1.5, -1.2) = -1.2 -- identical to the plain clipped surrogate
    pos = dual_clip_loss(lp, old, torch.tensor([1.0]))
    np.testing.assert_allclose(pos, [[-1.2, -1.2]], rtol=1e-6)
    torch.testing.assert_close(pos, clipped_surrogate(lp, old, torch.tensor([1.0]))[0])


# ---- copo_loss ----------------------------------------------------------------------------------------------
# 2 samples x 2 tokens, rho = [1, 1.5] on both rows.
# s0: reward 1, A^L = 0, A^G = 0.5, gate 0.25    s1: reward 0, A^L = -1, A^G = -0.5, gate 0.75
# l(A) at rho 1 = -A; at rho 1.5: A > 0 -> -1.2 A, A < 0 -> -1.5 A (cap -3A not reached)
# l(A^L): s0 [0, 0], s1 [1, 1.5];  l(A^G): s0 [-0.5, -0.6], s1 [0.5, 0.75]
LP = torch.tensor([[0.0, math.log(1.5)], [0.0, math.log(1.5)]])
OLD = torch.zeros(2, 2)
LOCAL, GLOBAL, GATE, REWARD = [0.0, -1.0], [0.5, -0.5], [0.25, 0.75], [1.0, 0.0]
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


@pytest.mark.parametrize("mode", COPO_MODES)
def test_copo_loss_modes(mode):
    ell, _, _ = copo_per_token_loss(LP, OLD, LOCAL, GLOBAL, GATE, REWARD, mode, global_loss_coef=2.0)
    np.testing.assert_allclose(ell, EXPECTED[mode], rtol=1e-6, atol=1e-7)
    loss, stats = copo_loss(LP, OLD, LOCAL, GLOBAL, GATE, torch.ones(2, 2), REWARD, mode, global_loss_coef=2.0)
    assert float(loss) == pytest.approx(float(np.mean(EXPECTED[mode])))  # all tokens valid, equal lengths
    assert stats["gate_mean"] == pytest.approx(0.5)


def test_copo_loss_stats_and_unknown_mode():
    _, stats = copo_loss(LP, OLD, LOCAL, GLOBAL, GATE, torch.ones(2, 2), REWARD, "only-soft")
    assert stats["global_loss_share"] == pytest.approx(0.5)  # (1-w) = [0.75, 0.75, 0.25, 0.25]
    # clipped tokens: rho 1.5 with A > 0 (s0 global branch, weight 0.75); s1 at rho 1.5 is not clipped (A < 0)
    assert stats["clip_fraction"] == pytest.approx(0.75 / 4)
    with pytest.raises(ValueError, match="only-soft"):
        copo_loss(LP, OLD, LOCAL, GLOBAL, GATE, torch.ones(2, 2), REWARD, "bogus")


@pytest.mark.parametrize("mode", ["only-soft", "soft-with-forced"])
def test_zero_variance_group_still_gets_gradient_under_copo(mode):
    correct = np.array([[1.0, 1.0], [0.0, 1.0]])  # group 0 is all correct -> zero GRPO advantage
    local = group_normalized(correct)
    adv_g, ent = copo_global_advantage(correct, [["7", "7"], ["3", "7"]])
    assert np.all(local[0] == 0.0) and adv_g[0] > 0  # R = [1, 0.5] -> A^G = [0.707, -0.707]
    gate = copo_gate(ent)  # group 0: sigmoid(5 * (0 - 1)) = 0.0067
    old = torch.full((2, 3), -1.0)
    mask = torch.ones(2, 3)

    lp = old.clone().requires_grad_(True)
    loss, _ = copo_loss(lp, old, local[0], np.repeat(adv_g[0], 2), np.repeat(gate[0], 2), mask, correct[0], mode)
    loss.backward()
    assert lp.grad.abs().sum() > 0

    lp_grpo = old.clone().requires_grad_(True)
    loss_grpo, _ = policy_loss(lp_grpo, old, torch.as_tensor(local[0]), mask, agg_mode="seq-mean-token-mean")
    loss_grpo.backward()
    assert torch.all(lp_grpo.grad == 0)
