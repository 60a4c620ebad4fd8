"""CARE and COPO through the learner's batch layer: TrajectoryGroups in, advantages and logged metrics out.

Two hand-worked groups (G = 4) are used throughout:
  A: total [11, 1, 11, 0], accuracy [1, 0, 1, 0], accuracy reward [10, 0, 10, 0], p [0.9, 0.2, 0.5, 0.1],
     answers yes/no/yes/no (H = 1 bit), consistent [1, 0, 0, 0]
  B: total [1, 1, 1, 1] (zero variance), accuracy 0, p 0.5 each, answers all "no" (H = 0)
CARE: high set of A = {0, 2} (acc reward >= mean 5), tau = (0.9 + 0.5) / 2 = 0.7 -> only sample 0 is confident,
bonus 0.5 * 10 = 5; B has an empty high set -> no bonus.
COPO: pass rates R = [0.5, 0] -> A^G = +-0.25 / std([0.5, 0], ddof=1) = +-0.7071; gates sigmoid(5 (H - 1)) =
[0.5, sigmoid(-5)].
"""
import math

import numpy as np
import pytest
import torch

from cluster.config import ConfigError, load_config
from data.trajectory import Sample, TrajectoryGroup
from learner.batch import batch_stats, collate, compute_advantages, flatten


def _group(gid, total, acc, p, answers, consistent):
    samples = [Sample([5, 6], [-1.0, -1.0], "", "stop", 0) for _ in total]
    g = TrajectoryGroup(gid, gid, {}, [1, 2, 3], samples, 0)
    acc = np.array(acc, dtype=float)
    g.rewards = {"total": np.array(total, dtype=float), "accuracy": acc, "accuracy_reward": 10 * acc,
                 "consistent": np.array(consistent, dtype=float)}
    g.answers = g.answer_classes = list(answers)
    g.answer_likelihood = np.array(p) if p is not None else None
    return g


@pytest.fixture
def groups():
    return [_group("A", [11, 1, 11, 0], [1, 0, 1, 0], [0.9, 0.2, 0.5, 0.1], ["yes", "no", "yes", "no"], [1, 0, 0, 0]),
            _group("B", [1, 1, 1, 1], [0, 0, 0, 0], [0.5] * 4, ["no"] * 4, [0] * 4)]


def algo(advantage, **kw):
    cfg = load_config(None, [f"algorithm.advantage={advantage}", *[f"algorithm.{k}={v}" for k, v in kw.items()]])
    return {**cfg.algorithm.model_dump(), "care_on": cfg.algorithm.care_on, "kl_coef": cfg.algorithm.effective_kl_coef}


def grpo_row(r, eps):
    r = np.asarray(r, dtype=float)
    return (r - r.mean()) / (r.std(ddof=1) + eps)


def test_care_advantages_and_metrics(groups):
    adv = compute_advantages(groups, algo("care"))
    np.testing.assert_array_equal(adv.bonus, [[5, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(adv.local[0], grpo_row([16, 1, 11, 0], 1e-4))   # paper eps 1e-4
    np.testing.assert_allclose(adv.local[0], np.array([9, -6, 4, -7]) / (math.sqrt(182 / 3) + 1e-4))
    np.testing.assert_array_equal(adv.local[1], np.zeros(4))
    stats = batch_stats(groups, adv, 0)
    assert stats["care/bonus_rate"] == 1 / 8 and stats["care/bonus_mean"] == 5 / 8
    assert stats["care/answer_likelihood_mean"] == pytest.approx(3.7 / 8)
    assert stats["care/consistency_rate"] == 1 / 8
    assert "copo/answer_entropy_mean" not in stats


def test_care_needs_reference_likelihoods(groups):
    groups[1].answer_likelihood = None
    with pytest.raises(ValueError, match="no reference answer likelihood"):
        compute_advantages(groups, algo("care"))


def test_grpo_ignores_care_inputs(groups):
    adv = compute_advantages(groups, algo("grpo"))
    assert adv.bonus is None and adv.global_adv is None
    np.testing.assert_allclose(adv.local[0], grpo_row([11, 1, 11, 0], 1e-6))


def test_copo_advantages_and_metrics(groups):
    adv = compute_advantages(groups, algo("copo"))
    np.testing.assert_allclose(adv.local[0], grpo_row([11, 1, 11, 0], 1e-6))
    np.testing.assert_allclose(adv.global_adv, np.array([0.25, -0.25]) / (math.sqrt(0.125) + 1e-6))
    np.testing.assert_allclose(adv.entropy, [1.0, 0.0])
    np.testing.assert_allclose(adv.gate, [0.5, 1 / (1 + math.exp(5))])
    stats = batch_stats(groups, adv, 0, "soft-with-zero")
    assert stats["copo/answer_entropy_mean"] == 0.5
    # B has zero variance; soft-with-zero gives its (all wrong) samples the pure global loss, A^G(B) != 0
    assert stats["copo/zero_variance_with_gradient"] == 1.0
    assert batch_stats(groups, adv, 0, "no-global")["copo/zero_variance_with_gradient"] == 0.0

    items = flatten(groups, adv)
    batch = collate(items, pad_id=0)
    np.testing.assert_allclose(batch["global_advantages"].numpy(), np.repeat(adv.global_adv, 4), rtol=1e-6)
    np.testing.assert_allclose(batch["gates"].numpy(), np.repeat(adv.gate, 4), rtol=1e-6)
    np.testing.assert_array_equal(batch["correct"].numpy(), [1, 0, 1, 0, 0, 0, 0, 0])


def test_care_composes_with_copo(groups):
    adv = compute_advantages(groups, algo("copo", **{"care.enabled": "true"}))
    np.testing.assert_allclose(adv.local[0], grpo_row([16, 1, 11, 0], 1e-6))   # bonus shapes the local reward
    # the pass rates, hence A^G, are unchanged by the bonus
    np.testing.assert_allclose(adv.global_adv, np.array([0.25, -0.25]) / (math.sqrt(0.125) + 1e-6))
    stats = batch_stats(groups, adv, 0, "soft-with-zero")
    assert stats["care/bonus_rate"] == 1 / 8 and "copo/gate_mean" not in stats   # gate mean comes from the loss


def test_care_switches_kl_off_unless_asked():
    assert algo("grpo", kl_coef=0.05)["kl_coef"] == 0.05
    assert algo("care", kl_coef=0.05)["kl_coef"] == 0.0
    assert algo("care", kl_coef=0.05, **{"care.keep_kl": "true"})["kl_coef"] == 0.05
    assert algo("copo", kl_coef=0.05, **{"care.enabled": "true"})["kl_coef"] == 0.0
    with pytest.raises(ConfigError, match="unknown advantage estimator 'carre'"):
        load_config(None, ["algorithm.advantage=carre"])
    with pytest.raises(ConfigError, match="copo.mode"):
        load_config(None, ["algorithm.copo.mode=soft"])


def test_copo_loss_reaches_the_zero_variance_group_in_the_learner_batch(groups):
    """Through collate and copo_loss: B's samples get gradient under COPO, none under GRPO."""
    from learner.losses import copo_loss, policy_loss
    a = algo("copo")
    adv = compute_advantages(groups, a)
    batch = collate(flatten(groups, adv), pad_id=0)
    logp = batch["old_logprobs"].clone().requires_grad_(True)
    loss, _ = copo_loss(logp, batch["old_logprobs"], batch["advantages"], batch["global_advantages"],
                        batch["gates"], batch["response_mask"], batch["correct"], a["copo"]["mode"])
    loss.backward()
    assert torch.all(logp.grad[4:] != 0)               # group B rows
    logp.grad = None
    loss, _ = policy_loss(logp, batch["old_logprobs"], batch["advantages"], batch["response_mask"])
    loss.backward()
    assert torch.all(logp.grad[4:] == 0)
