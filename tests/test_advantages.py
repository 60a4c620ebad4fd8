"""Advantage estimators (learner.algorithms: grpo, dr_grpo, the registry, the pipeline): every expected value is
worked out by hand in a comment."""
import math

import numpy as np
import pytest
import torch

from cluster.config import ConfigError, load_config
from data.trajectory import Sample, TrajectoryGroup
from learner.algorithms.base import (ALGORITHMS, Advantages, Algorithm, constant_rows, get_algorithm,
                                     register_algorithm, reward_matrix, zero_variance_fraction)
from learner.algorithms.grpo import GRPO, DrGRPO, group_normalized, mean_centred
from learner.algorithms.pipeline import AlgorithmPipeline
from learner.config import Section


def algorithm_cfg(*overrides):
    return load_config(None, list(overrides)).algorithm


def make_groups(totals):
    out = []
    for k, r in enumerate(totals):
        samples = [Sample([5, 6], [-1.0, -1.0], "", "stop", 0) for _ in r]
        g = TrajectoryGroup(f"g{k}", f"p{k}", {}, [1, 2], samples, 0)
        r = np.asarray(r, dtype=float)
        g.rewards = {"total": r, "accuracy": (r > 0).astype(float)}
        out.append(g)
    return out


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


def test_grpo_accepts_tensors_and_integers_and_returns_float64_numpy():
    # the advantage stage is numpy (the engine makes the tensors); a CPU tensor or ints are read as float64
    # same numbers as the first test: A = +-0.866024
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    for r in (torch.tensor([[1.0, 0.0, 0.0, 1.0]]), torch.tensor([[1, 0, 0, 1]]), [[1, 0, 0, 1]]):
        adv = group_normalized(r)
        assert isinstance(adv, np.ndarray) and adv.dtype == np.float64 and adv.shape == (1, 4)
        np.testing.assert_allclose(adv, [[a, -a, -a, a]], rtol=1e-7)


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
    with pytest.raises(ValueError, match="groups, G"):
        mean_centred(np.array([1.0, 0.0]))


# ---- mean_centred (dr_grpo) ---------------------------------------------------------------------------------
def test_dr_grpo_only_centres():
    # row 0: [1, 0, 0, 1] - 0.5 = [.5, -.5, -.5, .5]
    # row 1: [2, 4, 6, 8], mean 20/4 = 5 -> [-3, -1, 1, 3] (no division by its std 2.582)
    adv = mean_centred(np.array([[1.0, 0.0, 0.0, 1.0], [2.0, 4.0, 6.0, 8.0]]))
    np.testing.assert_allclose(adv, [[0.5, -0.5, -0.5, 0.5], [-3.0, -1.0, 1.0, 3.0]], rtol=1e-12)


def test_dr_grpo_zero_variance_and_group_of_one():
    # [0.3, 0.3] -> exactly 0, 0; [1, 0] -> [0.5, -0.5]; G = 1: A = r (mean taken as 0), a copy of the input
    adv = mean_centred(torch.tensor([[0.3, 0.3], [1.0, 0.0]]))
    assert np.all(adv[0] == 0.0)
    np.testing.assert_allclose(adv[1], [0.5, -0.5])
    r = np.array([[3.0], [-2.0]])
    one = mean_centred(r)
    np.testing.assert_array_equal(one, r)
    one[0, 0] = 9.0
    assert r[0, 0] == 3.0


# ---- the algorithm classes, built from the config -----------------------------------------------------------
def test_grpo_and_dr_grpo_algorithms_from_config():
    # groups: [1, 0, 0, 1] -> GRPO +-0.866024 (see the first test), Dr. GRPO +-0.5; [2, 2, 2, 2] -> 0
    groups = make_groups([[1, 0, 0, 1], [2, 2, 2, 2]])
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    pipe = AlgorithmPipeline(algorithm_cfg())
    assert type(pipe.algorithm) is GRPO and pipe.algorithm.eps == 1e-6
    adv = pipe.advantages(groups)
    assert isinstance(adv, Advantages) and adv.token is None and adv.loss_inputs == {} and adv.metrics == {}
    np.testing.assert_allclose(adv.sample, [[a, -a, -a, a], [0, 0, 0, 0]], rtol=1e-12)
    adv = AlgorithmPipeline(algorithm_cfg("algorithm.advantage=dr_grpo")).advantages(groups)
    np.testing.assert_allclose(adv.sample, [[0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0]], rtol=1e-12)
    # adv_eps overrides the default: eps 1 -> 0.5 / (0.577350 + 1) = 0.316987
    pipe = AlgorithmPipeline(algorithm_cfg("algorithm.adv_eps=1.0"))
    assert pipe.algorithm.eps == 1.0
    np.testing.assert_allclose(pipe.advantages(groups).sample[0], np.array([1, -1, -1, 1]) * 0.316987, atol=1e-6)


def test_reward_matrix_checks_sizes_and_components():
    groups = make_groups([[1, 0], [0, 1]])
    np.testing.assert_array_equal(reward_matrix(groups), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(reward_matrix(groups, "accuracy"), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="'format' missing in groups \\['g0', 'g1'\\]"):
        reward_matrix(groups, "format")
    with pytest.raises(ValueError, match="different sizes"):
        reward_matrix(make_groups([[1, 0], [0, 1, 1]]))


# ---- registry -----------------------------------------------------------------------------------------------
def test_registry_lookup():
    assert get_algorithm("grpo") is GRPO
    assert get_algorithm("dr_grpo") is DrGRPO
    assert ALGORITHMS["grpo"] is GRPO
    assert {"grpo", "dr_grpo", "care", "copo"} <= set(ALGORITHMS)


def test_registry_unknown_name_lists_known():
    with pytest.raises(KeyError) as err:
        get_algorithm("nope")
    msg = str(err.value)
    assert "nope" in msg and "grpo" in msg and "dr_grpo" in msg


def test_register_rejects_nameless_and_duplicate_classes():
    class Nameless(Algorithm):
        pass

    with pytest.raises(ValueError, match="has no `name`"):
        register_algorithm(Nameless)

    class FakeGrpo(Algorithm):
        name = "grpo"

    with pytest.raises(ValueError, match="'grpo' is already registered"):
        register_algorithm(FakeGrpo)
    assert ALGORITHMS["grpo"] is GRPO
    assert register_algorithm(GRPO) is GRPO      # registering the same class again is harmless


@pytest.fixture
def toy_sign():
    """An algorithm registered from outside learner/algorithms: A_i = scale * sign(r_i - mean_g r)."""
    class ToySignConfig(Section):
        scale: float = 1.0

    @register_algorithm
    class ToySign(Algorithm):
        name = "_test_toy_sign"
        Config = ToySignConfig

        def advantages(self, groups, rewards):
            r = np.asarray(rewards, dtype=np.float64)
            return Advantages(self.options.scale * np.sign(r - r.mean(axis=1, keepdims=True)),
                              metrics={"toy/groups": float(len(groups))})

    try:
        yield ToySign
    finally:
        ALGORITHMS.pop("_test_toy_sign", None)


def test_plugin_algorithm_is_selectable_by_config(toy_sign):
    # [3, 1, 2, 2]: mean 2 -> sign([1, -1, 0, 0]) = [1, -1, 0, 0]
    # [0, 5, 1, 1]: mean 7/4 = 1.75 -> sign([-1.75, 3.25, -0.75, -0.75]) = [-1, 1, -1, -1]
    groups = make_groups([[3, 1, 2, 2], [0, 5, 1, 1]])
    cfg = algorithm_cfg("algorithm.advantage=_test_toy_sign")
    pipe = AlgorithmPipeline(cfg)
    assert type(pipe.algorithm) is toy_sign and pipe.algorithm.options.scale == 1.0
    adv = pipe.advantages(groups)
    np.testing.assert_array_equal(adv.sample, [[1, -1, 0, 0], [-1, 1, -1, -1]])
    assert adv.metrics == {"toy/groups": 2.0}
    # its own options section: scale 2 doubles every advantage
    cfg = algorithm_cfg("algorithm.advantage=_test_toy_sign", "algorithm.options={scale: 2.0}")
    np.testing.assert_array_equal(AlgorithmPipeline(cfg).advantages(groups).sample, [[2, -2, 0, 0], [-2, 2, -2, -2]])
    # and the default token loss (PPO clipped surrogate) on-policy: l = -A on every token
    per_token, stats = pipe.token_loss(torch.zeros(2, 1), torch.zeros(2, 1), torch.tensor([1.0, -2.0]),
                                       torch.ones(2, 1), {})
    torch.testing.assert_close(per_token, torch.tensor([[-1.0], [2.0]]))
    assert stats == {"loss/clip_fraction": 0.0}


def test_plugin_options_are_validated_by_name(toy_sign):
    with pytest.raises(ConfigError, match="scal"):
        load_config(None, ["algorithm.advantage=_test_toy_sign", "algorithm.options={scal: 2.0}"])
    with pytest.raises(ConfigError, match="has no options"):
        load_config(None, ["algorithm.options={scale: 2.0}"])      # grpo has no options section


def test_plugin_option_error_names_the_full_key(toy_sign):
    with pytest.raises(ConfigError, match=r"'algorithm'.*options\.scal: Extra inputs"):
        load_config(None, ["algorithm.advantage=_test_toy_sign", "algorithm.options={scal: 2.0}"])


def test_plugin_name_is_unknown_once_unregistered():
    assert "_test_toy_sign" not in ALGORITHMS     # the fixture's teardown popped it
    with pytest.raises(ConfigError, match="unknown algorithm '_test_toy_sign'"):
        load_config(None, ["algorithm.advantage=_test_toy_sign"])


def test_unknown_algorithm_and_plugin_module_are_config_errors():
    with pytest.raises(ConfigError, match="unknown algorithm 'carre'") as e:
        load_config(None, ["algorithm.advantage=carre"])
    assert "algorithm" in str(e.value) and "grpo" in str(e.value)     # the key and the known names
    with pytest.raises(ConfigError, match="cannot import '_no_such_waypoint_plugin'"):
        load_config(None, ["algorithm.plugins=[_no_such_waypoint_plugin]"])


@pytest.mark.parametrize("key", ["algorithm.copo.gate_kk", "algorithm.care.bonus_cof", "algorithm.process.coeff",
                                 "algorithm.advantages"])
def test_misspelt_algorithm_key_is_a_config_error_naming_it(key):
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        load_config(None, [f"{key}=1"])


# ---- constant_rows / zero_variance_fraction -----------------------------------------------------------------
def test_constant_rows():
    r = np.array([[1, 1, 1], [0, 1, 0], [2, 2, 2]], dtype=float)
    np.testing.assert_array_equal(constant_rows(r), [True, False, True])
    # a spread of 1e-10 is constant only within a tolerance; G = 0 rows are constant
    np.testing.assert_array_equal(constant_rows(np.array([[1.0, 1.0 + 1e-10]])), [False])
    np.testing.assert_array_equal(constant_rows(np.array([[1.0, 1.0 + 1e-10]]), 1e-8), [True])
    np.testing.assert_array_equal(constant_rows(np.zeros((2, 0))), [True, True])


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
