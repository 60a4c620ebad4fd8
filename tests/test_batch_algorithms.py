"""CARE and COPO through the learner's batch layer: TrajectoryGroups in, advantages, rows, micro-batch tensors and
logged metrics out (AlgorithmPipeline -> sample_rows -> micro_batch, batch_stats).

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
from learner.algorithms.care import CareBonus
from learner.algorithms.pipeline import AlgorithmPipeline
from learner.batch import batch_stats, micro_batch, mini_normaliser, sample_rows, segments
from learner.losses import aggregate


def _group(gid, total, acc, p, answers, consistent, lengths=None):
    lengths = lengths or [2] * len(total)
    samples = [Sample(list(range(5, 5 + n)), [-1.0 - 0.1 * k for k in range(n)], "", "stop", 0) for n in lengths]
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


def algorithm_cfg(advantage, **kw):
    return load_config(None, [f"algorithm.advantage={advantage}",
                              *[f"algorithm.{k}={v}" for k, v in kw.items()]]).algorithm


def pipeline(advantage, **kw):
    return AlgorithmPipeline(algorithm_cfg(advantage, **kw))


def grpo_row(r, eps):
    r = np.asarray(r, dtype=float)
    return (r - r.mean()) / (r.std(ddof=1) + eps)


def test_care_advantages_and_metrics(groups):
    bonus, _ = CareBonus(algorithm_cfg("care").care)(groups)
    np.testing.assert_array_equal(bonus, [[5, 0, 0, 0], [0, 0, 0, 0]])
    adv = pipeline("care").advantages(groups)
    np.testing.assert_allclose(adv.sample[0], grpo_row([16, 1, 11, 0], 1e-4))   # paper eps 1e-4
    # [16, 1, 11, 0]: mean 7, dev [9, -6, 4, -7], unbiased var = (81 + 36 + 16 + 49) / 3 = 182/3
    np.testing.assert_allclose(adv.sample[0], np.array([9, -6, 4, -7]) / (math.sqrt(182 / 3) + 1e-4))
    np.testing.assert_array_equal(adv.sample[1], np.zeros(4))
    stats = batch_stats(groups, adv, 0)
    assert stats["care/bonus_rate"] == 1 / 8 and stats["care/bonus_mean"] == 5 / 8
    # p: 0.9 + 0.2 + 0.5 + 0.1 + 4 * 0.5 = 3.7 over 8 samples; every span found
    assert stats["care/answer_likelihood_mean"] == pytest.approx(3.7 / 8)
    assert stats["care/no_span_rate"] == 0.0
    assert stats["care/consistency_rate"] == 1 / 8
    assert "copo/answer_entropy_mean" not in stats


def test_care_needs_reference_likelihoods(groups):
    groups[1].answer_likelihood = None
    with pytest.raises(ValueError, match="no reference answer likelihood"):
        pipeline("care").advantages(groups)


def test_grpo_ignores_care_inputs(groups):
    adv = pipeline("grpo").advantages(groups)
    assert adv.loss_inputs == {} and adv.metrics == {} and adv.token is None
    np.testing.assert_allclose(adv.sample[0], grpo_row([11, 1, 11, 0], 1e-6))
    stats = batch_stats(groups, adv, 0)
    assert not any(k.startswith(("care/", "copo/")) for k in stats)


def test_batch_stats_generic_fields(groups):
    adv = pipeline("grpo").advantages(groups)
    groups[1].version = 1
    stats = batch_stats(groups, adv, 3)
    # reward/total: (11 + 1 + 11 + 0 + 4 * 1) / 8 = 27/8; accuracy 2/8; accuracy_reward 20/8
    assert stats["reward/total"] == 27 / 8 and stats["reward/accuracy"] == 0.25
    assert stats["reward/accuracy_reward"] == 2.5 and stats["reward/consistent"] == 1 / 8
    # GRPO rows sum to 0 and B is all 0 -> adv/mean 0; a GRPO row's squares sum to (G - 1) = 3 (sum dev^2 / var
    # with var = sum dev^2 / 3), B's to 0 -> adv/std (over 8 values, ddof 0) = sqrt(3 / 8) = 0.612372
    assert stats["adv/mean"] == pytest.approx(0.0, abs=1e-12)
    assert stats["adv/std"] == pytest.approx(0.612372, abs=1e-6)
    assert stats["zero_variance_fraction"] == 0.5                 # B
    # lags: 3 - 0 = 3 and 3 - 1 = 2 -> mean 2.5, max 3
    assert stats["staleness/mean"] == 2.5 and stats["staleness/max"] == 3.0
    assert stats["response/len_mean"] == 2.0 and stats["response_tokens"] == 16.0
    assert stats["response/stop_fraction"] == 1.0 and stats["reward_failures"] == 0.0


def test_copo_advantages_and_metrics(groups):
    adv = pipeline("copo").advantages(groups)
    np.testing.assert_allclose(adv.sample[0], grpo_row([11, 1, 11, 0], 1e-6))
    global_adv = np.array([0.25, -0.25]) / (math.sqrt(0.125) + 1e-6)
    np.testing.assert_allclose(adv.loss_inputs["global_adv"], np.repeat(global_adv[:, None], 4, axis=1))
    np.testing.assert_allclose(adv.loss_inputs["gate"], [[0.5] * 4, [1 / (1 + math.exp(5))] * 4])
    np.testing.assert_array_equal(adv.loss_inputs["correct"], [[1, 0, 1, 0], [0, 0, 0, 0]])
    stats = batch_stats(groups, adv, 0)
    assert stats["copo/answer_entropy_mean"] == 0.5                 # H = [1, 0]
    # std over the two groups' A^G (ddof 0): +-0.707105 -> 0.707105
    assert stats["copo/global_adv_std"] == pytest.approx(0.25 / (math.sqrt(0.125) + 1e-6))
    # B has zero variance; soft-with-zero gives its (all wrong) samples the pure global loss, A^G(B) != 0
    assert stats["copo/zero_variance_with_gradient"] == 1.0
    no_global = pipeline("copo", **{"copo.mode": "no-global"}).advantages(groups)
    assert no_global.metrics["copo/zero_variance_with_gradient"] == 0.0

    rows = sample_rows(groups, adv)
    assert [(r.group.group_id, r.index) for r in rows] == [("A", i) for i in range(4)] + [("B", i) for i in range(4)]
    mb = micro_batch(rows, "cpu")
    np.testing.assert_allclose(mb.inputs["global_adv"].numpy(), np.repeat(global_adv, 4), rtol=1e-6)
    np.testing.assert_allclose(mb.inputs["gate"].numpy(), np.repeat([0.5, 1 / (1 + math.exp(5))], 4), rtol=1e-6)
    np.testing.assert_array_equal(mb.inputs["correct"].numpy(), [1, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(mb.advantages.numpy(), adv.sample.reshape(-1), rtol=1e-6)


def test_care_composes_with_copo(groups):
    cfg = algorithm_cfg("copo", **{"care.enabled": "true"})
    assert cfg.care_on
    adv = AlgorithmPipeline(cfg).advantages(groups)
    np.testing.assert_allclose(adv.sample[0], grpo_row([16, 1, 11, 0], 1e-6))   # bonus shapes the local reward
    # the pass rates, hence A^G, are unchanged by the bonus
    np.testing.assert_allclose(adv.loss_inputs["global_adv"][:, 0], np.array([0.25, -0.25]) / (math.sqrt(0.125) + 1e-6))
    stats = batch_stats(groups, adv, 0)
    assert stats["care/bonus_rate"] == 1 / 8 and "copo/gate_mean" not in stats   # gate mean comes from the loss
    assert stats["copo/answer_entropy_mean"] == 0.5


def test_care_switches_kl_off_unless_asked():
    assert algorithm_cfg("grpo", kl_coef=0.05).effective_kl_coef == 0.05
    assert algorithm_cfg("care", kl_coef=0.05).effective_kl_coef == 0.0
    assert algorithm_cfg("care", kl_coef=0.05, **{"care.keep_kl": "true"}).effective_kl_coef == 0.05
    assert algorithm_cfg("copo", kl_coef=0.05, **{"care.enabled": "true"}).effective_kl_coef == 0.0
    with pytest.raises(ConfigError, match="unknown algorithm 'carre'"):
        load_config(None, ["algorithm.advantage=carre"])
    with pytest.raises(ConfigError, match="copo.mode"):
        load_config(None, ["algorithm.copo.mode=soft"])


def test_rows_segments_and_micro_batch_tensors():
    # group P: responses of 3 and 1 tokens; group Q: 2 and 0 tokens
    # Dr. GRPO: P [1, 0] -> [.5, -.5], Q [0, 2] -> [-1, 1]
    groups = [_group("P", [1, 0], [1, 0], None, ["a", "b"], [0, 0], lengths=[3, 1]),
              _group("Q", [0, 2], [0, 1], None, ["a", "b"], [0, 0], lengths=[2, 0])]
    adv = pipeline("dr_grpo").advantages(groups)
    rows = sample_rows(groups, adv)
    assert [r.advantage for r in rows] == [0.5, -0.5, -1.0, 1.0]
    assert [r.token_ids for r in rows] == [[5, 6, 7], [5], [5, 6], []]
    assert all(r.token_advantage is None and r.inputs == {} for r in rows)
    segs = segments(rows)
    assert [(s.prompt_ids, s.responses) for s in segs] == [([1, 2, 3], [[5, 6, 7], [5]]), ([1, 2, 3], [[5, 6], []])]
    assert [len(s.responses) for s in segments(rows[1:3])] == [1, 1]      # a group split across micro-batches
    mb = micro_batch(rows, "cpu")
    assert mb.mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]]
    # behaviour log-probs -1, -1.1, -1.2 on the valid tokens, 0 on padding
    torch.testing.assert_close(mb.old_logprobs, torch.tensor([[-1.0, -1.1, -1.2], [-1.0, 0, 0], [-1.0, -1.1, 0],
                                                              [0, 0, 0]]))
    assert mb.advantages.tolist() == [0.5, -0.5, -1.0, 1.0] and mb.inputs == {}
    # the mini-batch normaliser: 3 + 1 + 2 + 0 = 6 tokens for token-mean, 4 sequences otherwise
    assert mini_normaliser(rows, "token-mean") == 6.0
    assert mini_normaliser(rows, "seq-mean-token-mean") == 4.0 == mini_normaliser(rows, "seq-mean-token-sum-norm")


def test_copo_loss_reaches_the_zero_variance_group_in_the_learner_batch(groups):
    """Through micro_batch and COPO's token loss: B's samples get gradient under COPO, none under GRPO."""
    pipe = pipeline("copo")
    mb = micro_batch(sample_rows(groups, pipe.advantages(groups)), "cpu")
    logp = mb.old_logprobs.clone().requires_grad_(True)
    per_token, _ = pipe.token_loss(logp, mb.old_logprobs, mb.advantages, mb.mask, mb.inputs)
    aggregate(per_token, mb.mask, pipe.cfg.loss_agg).backward()
    assert torch.all(logp.grad[4:] != 0)               # group B rows
    grpo = pipeline("grpo")
    mb = micro_batch(sample_rows(groups, grpo.advantages(groups)), "cpu")
    logp = mb.old_logprobs.clone().requires_grad_(True)
    per_token, _ = grpo.token_loss(logp, mb.old_logprobs, mb.advantages, mb.mask, mb.inputs)
    aggregate(per_token, mb.mask, grpo.cfg.loss_agg).backward()
    assert torch.all(logp.grad[4:] == 0)
    assert torch.any(logp.grad[:4] != 0)
