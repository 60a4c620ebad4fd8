"""The learner step in-process (one gloo rank, no Ray): the PPO recipe's several updates per batch, and a loss
normalisation that makes the update independent of how a mini-batch is split into micro-batches."""
import numpy as np
import pytest
import torch

from cluster.config import load_config
from cluster.tasks import resolve_policy
from learner.engine import LearnerSpec, PolicyLearner
from learner_fixtures import init_single_rank, scored_groups


@pytest.fixture(scope="module")
def tiny():
    init_single_rank()
    cfg = load_config("configs/cpu_tiny.yaml")
    path, vision, _ = resolve_policy(cfg)
    from transformers import AutoConfig
    return path, AutoConfig.from_pretrained(path).vocab_size


def learner(tiny, *overrides, groups=4, g=4) -> PolicyLearner:
    cfg = load_config("configs/cpu_tiny.yaml", list(overrides))
    return PolicyLearner(LearnerSpec(tiny[0], False, cfg.algorithm, cfg.learner, 1.0, 16, g, groups))


def weights(lrn: PolicyLearner) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in lrn.full_state_dict().items()}


def test_one_update_on_policy_has_ratio_one_and_several_updates_clip(tiny):
    batch = scored_groups(4, 4, tiny[1], seed=1)
    one = learner(tiny, "learner.old_logprobs=recompute", "learner.lr=1e-2").train_step(batch)
    assert one["learner/updates_per_batch"] == 1.0
    assert one["loss/ratio_mean"] == pytest.approx(1.0, abs=1e-6) and one["loss/clip_fraction"] == 0.0
    many = learner(tiny, "learner.old_logprobs=recompute", "learner.lr=1e-2", "learner.ppo_epochs=3",
                   "learner.ppo_mini_batch_size=2").train_step(batch)
    assert many["learner/updates_per_batch"] == 6.0
    assert many["loss/clip_fraction"] > 0.0 and many["loss/ratio_mean"] != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_the_update_does_not_depend_on_the_micro_batch_split(tiny, agg):
    """Adam with eps 1 (>> |g|) and no decay makes the first update ~ lr * g, so a mis-normalised micro-batch
    would show; responses of 1-5 tokens make per-micro and global normalisers differ."""
    batch = scored_groups(4, 4, tiny[1], seed=2)
    common = ("learner.lr=1.0", "learner.adam_eps=1.0", "learner.weight_decay=0.0", "learner.max_grad_norm=1e9",
              f"algorithm.loss_agg={agg}")
    deltas = []
    for micro in (16, 4, 2):
        lrn = learner(tiny, *common, f"learner.micro_batch_size={micro}")
        before = weights(lrn)
        lrn.train_step(batch)
        after = weights(lrn)
        deltas.append({k: after[k] - before[k] for k in before})
    assert max(np.abs(d).max() for d in deltas[0].values()) > 1e-4      # the step moved the weights
    for other in deltas[1:]:
        for k in deltas[0]:
            np.testing.assert_allclose(other[k], deltas[0][k], atol=1e-6, err_msg=k)


def test_the_shared_prefix_step_equals_the_padded_step(tiny):
    """The whole optimizer step, not just the forward: the same update to 1e-6 (fp32) either way."""
    batch = scored_groups(4, 3, tiny[1], seed=5)
    common = ("learner.lr=1.0", "learner.adam_eps=1.0", "learner.weight_decay=0.0", "learner.max_grad_norm=1e9",
              "learner.micro_batch_size=4")      # 4 of G=3: micro-batches cut groups, partial segments share too
    deltas, stats = [], []
    for mode in ("padded", "shared_prefix"):
        lrn = learner(tiny, *common, f"learner.forward={mode}", g=3)
        assert lrn.forward_mode == mode
        before = weights(lrn)
        stats.append(lrn.train_step(batch))
        deltas.append({k: v - before[k] for k, v in weights(lrn).items()})
    assert max(np.abs(d).max() for d in deltas[0].values()) > 1e-4
    for k in deltas[0]:
        np.testing.assert_allclose(deltas[1][k], deltas[0][k], atol=1e-6, err_msg=k)
    assert stats[1]["loss/ratio_mean"] == pytest.approx(stats[0]["loss/ratio_mean"], abs=1e-6)


def test_a_mini_batch_size_that_does_not_divide_the_step_is_an_error(tiny):
    with pytest.raises(ValueError, match="ppo_mini_batch_size=3"):
        learner(tiny, "learner.ppo_mini_batch_size=3")
    assert torch.distributed.is_initialized()
