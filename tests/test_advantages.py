"""Advantage estimators (learner.advantages): every expected value is worked out by hand in a comment."""
import math

import numpy as np
import pytest
import torch

from learner.advantages import (ADVANTAGE_ESTIMATORS, dr_grpo, get_advantage_estimator, group_normalized,
                                register_advantage, zero_variance_fraction)


# ---- group_normalized (grpo) --------------------------------------------------------------------------------
def test_grpo_two_right_two_wrong():
    # r = [1, 0, 0, 1]: mean = 2/4 = 0.5; deviations = [+.5, -.5, -.5, +.5]
    # unbiased var = (4 * 0.25) / (4 - 1) = 1/3; std = sqrt(1/3) = 0.577350
    # A = +-0.5 / (0.577350 + 1e-6) = +-0.866024
    adv = group_normalized(np.array([[1.0, 0.0, 0.0, 1.0]]))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert a == pytest.approx(0.866024, abs=1e-6)
    np.testing.assert_allclose(adv, [[a, -a, -a, a]], rtol=1e-12)


def test_grpo_rows_are_independent_and_eps_is_used():
    # row 0: r = [2, 4, 6]: mean 4, deviations [-2, 0, 2], unbiased var = 8/2 = 4, std 2 -> A = [-1, 0, 1]
    # row 1: r = [0, 0, 3]: mean 1, deviations [-1, -1, 2], var = (1+1+4)/2 = 3, std = 1.732051
    #        A = [-0.577350, -0.577350, 1.154701]
    adv = group_normalized(np.array([[2.0, 4.0, 6.0], [0.0, 0.0, 3.0]]), eps=0.0)
    s = math.sqrt(3)
    np.testing.assert_allclose(adv, [[-1.0, 0.0, 1.0], [-1 / s, -1 / s, 2 / s]], rtol=1e-12)
    # eps = 1: row 0 becomes [-2, 0, 2] / (2 + 1) = [-0.6667, 0, 0.6667]
    adv = group_normalized(np.array([[2.0, 4.0, 6.0]]), eps=1.0)
    np.testing.assert_allclose(adv, [[-2 / 3, 0.0, 2 / 3]], rtol=1e-12)


def test_grpo_zero_variance_group_is_exactly_zero():
    # all rewards equal -> every r_i - mean = 0 -> A = 0 (exactly, even with float round-off in the mean)
    adv = group_normalized(np.array([[0.1, 0.1, 0.1], [1.0, 0.0, 1.0]]))
    assert np.all(adv[0] == 0.0)
    # the other row is unaffected: mean 2/3, deviations [1/3, -2/3, 1/3], var = (1/9+4/9+1/9)/2 = 1/3
    s = math.sqrt(1 / 3) + 1e-6
    np.testing.assert_allclose(adv[1], [(1 / 3) / s, (-2 / 3) / s, (1 / 3) / s], rtol=1e-12)


def test_grpo_group_of_one_uses_mean_zero_std_one():
    # G = 1: mean 0, std 1 -> A = r / (1 + eps): 3 / 1.000001 = 2.999997; -2 / 1.000001 = -1.999998
    adv = group_normalized(np.array([[3.0], [-2.0]]))
    np.testing.assert_allclose(adv, [[3 / (1 + 1e-6)], [-2 / (1 + 1e-6)]], rtol=1e-12)


def test_grpo_torch_in_torch_out():
    # same numbers as the first test, as a float32 tensor: A = +-0.866024
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    adv = group_normalized(r)
    assert isinstance(adv, torch.Tensor) and adv.dtype == torch.float32 and adv.shape == (1, 4)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    torch.testing.assert_close(adv, torch.tensor([[a, -a, -a, a]]))
    # integer tensors come back as float32
    adv_int = group_normalized(torch.tensor([[1, 0, 0, 1]]))
    assert adv_int.dtype == torch.float32
    torch.testing.assert_close(adv_int, adv)


def test_grpo_numpy_input_is_not_modified_and_lists_work():
    r = np.array([[1.0, 0.0, 0.0, 1.0]])
    group_normalized(r)
    np.testing.assert_array_equal(r, [[1.0, 0.0, 0.0, 1.0]])
    assert isinstance(group_normalized([[1.0, 0.0]]), np.ndarray)
    # [1, 0]: mean .5, unbiased var = (.25 + .25)/1 = .5, std = 0.707107 -> A = +-0.5/0.707108 = +-0.707106
    np.testing.assert_allclose(group_normalized([[1.0, 0.0]]), [[0.707106, -0.707106]], atol=2e-6)


def test_grpo_rejects_non_2d():
    with pytest.raises(ValueError, match="groups, G"):
        group_normalized(np.array([1.0, 0.0]))


# ---- dr_grpo ------------------------------------------------------------------------------------------------
def test_dr_grpo_only_centres():
    # row 0: [1, 0, 0, 1] - 0.5 = [.5, -.5, -.5, .5]
    # row 1: [2, 4, 6, 8], mean 20/4 = 5 -> [-3, -1, 1, 3] (no division by its std 2.582)
    adv = dr_grpo(np.array([[1.0, 0.0, 0.0, 1.0], [2.0, 4.0, 6.0, 8.0]]))
    np.testing.assert_allclose(adv, [[0.5, -0.5, -0.5, 0.5], [-3.0, -1.0, 1.0, 3.0]], rtol=1e-12)


def test_dr_grpo_zero_variance_torch_and_ignored_kwargs():
    # [0.3, 0.3] -> 0, 0; torch in, torch out; the learner passes eps to every estimator: ignored here
    adv = get_advantage_estimator("dr_grpo")(torch.tensor([[0.3, 0.3], [1.0, 0.0]]), eps=1e-6)
    assert isinstance(adv, torch.Tensor)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.0], [0.5, -0.5]]))


# ---- registry -----------------------------------------------------------------------------------------------
def test_registry_lookup():
    assert get_advantage_estimator("grpo") is group_normalized
    assert get_advantage_estimator("dr_grpo") is dr_grpo
    assert ADVANTAGE_ESTIMATORS["grpo"] is group_normalized


def test_registry_unknown_name_lists_known():
    with pytest.raises(KeyError) as err:
        get_advantage_estimator("nope")
    msg = str(err.value)
    assert "nope" in msg and "grpo" in msg and "dr_grpo" in msg


def test_registry_new_estimator_is_found():
    try:
        @register_advantage("_test_doubled")
        def doubled(rewards, **_):
            """A_i = 2 r_i."""
            return 2 * np.asarray(rewards, dtype=np.float64)

        fn = get_advantage_estimator("_test_doubled")
        assert fn is doubled
        np.testing.assert_array_equal(fn(np.array([[1.0, 2.0]])), [[2.0, 4.0]])
        with pytest.raises(ValueError, match="already registered"):
            register_advantage("_test_doubled")(lambda rewards, **_: rewards)
    finally:
        ADVANTAGE_ESTIMATORS.pop("_test_doubled", None)


# ---- zero_variance_fraction ---------------------------------------------------------------------------------
def test_zero_variance_fraction():
    # rows: [1,1,1] constant, [0,1,0] not, [2,2,2] constant, [0,0,1] not -> 2 / 4 = 0.5
    r = np.array([[1, 1, 1], [0, 1, 0], [2, 2, 2], [0, 0, 1]], dtype=float)
    assert zero_variance_fraction(r) == 0.5
    assert zero_variance_fraction(torch.tensor(r)) == 0.5
    # tolerance: a spread of 1e-10 counts as constant at tol 1e-8, not at tol 0 -> 1/1 and 0/1
    near = np.array([[1.0, 1.0 + 1e-10]])
    assert zero_variance_fraction(near) == 1.0
    assert zero_variance_fraction(near, tol=0.0) == 0.0
    assert zero_variance_fraction(np.zeros((0, 4))) == 0.0
    assert isinstance(zero_variance_fraction(r), float)
