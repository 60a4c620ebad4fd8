"""Policy-loss pieces (learner.losses) and GRPO's token loss (learner.algorithms, PPO clipped surrogate) with the
engine's aggregation and KL term: every expected value is worked out by hand in a comment."""
import math

import pytest
import torch

from cluster.config import load_config
from learner.algorithms.pipeline import AlgorithmPipeline
from learner.losses import (AGG_MODES, aggregate, aggregate_normaliser, aggregate_sum, clipped_surrogate, low_var_kl,
                            masked_mean)

LN = math.log


def t(x, **kw):
    return torch.tensor(x, dtype=torch.float64, **kw)


# ---- clipped_surrogate --------------------------------------------------------------------------------------
def surrogate_one(ratio, adv, clip_low=0.2, clip_high=0.2):
    """One token: old logprob 0, new logprob ln(ratio)."""
    logp = t([[LN(ratio)]], requires_grad=True)
    loss, clipped = clipped_surrogate(logp, t([[0.0]]), t([adv]), clip_low, clip_high)
    loss.sum().backward()
    return loss.item(), bool(clipped.item()), logp.grad.item()


def test_surrogate_ratio_inside_the_band():
    # rho = 1.1 in [0.8, 1.2], A = 2: l = max(-2*1.1, -2*1.1) = -2.2; dl/dlogp = -A rho = -2.2
    loss, clipped, grad = surrogate_one(1.1, 2.0)
    assert loss == pytest.approx(-2.2) and not clipped and grad == pytest.approx(-2.2)


def test_surrogate_above_band_positive_advantage_is_clipped():
    # rho = 1.5, A = 1: -A rho = -1.5, -A clip(rho) = -1.2 -> max = -1.2 (clipped, no gradient)
    loss, clipped, grad = surrogate_one(1.5, 1.0)
    assert loss == pytest.approx(-1.2) and clipped and grad == 0.0


def test_surrogate_above_band_negative_advantage_is_not_clipped():
    # rho = 1.5, A = -1: -A rho = 1.5, -A clip(rho) = 1.2 -> max = 1.5 (pessimistic side, gradient -A rho = 1.5)
    loss, clipped, grad = surrogate_one(1.5, -1.0)
    assert loss == pytest.approx(1.5) and not clipped and grad == pytest.approx(1.5)


def test_surrogate_below_band_negative_advantage_is_clipped():
    # rho = 0.5, A = -1: -A rho = 0.5, -A clip(rho) = 0.8 -> max = 0.8 (clipped)
    loss, clipped, grad = surrogate_one(0.5, -1.0)
    assert loss == pytest.approx(0.8) and clipped and grad == 0.0


def test_surrogate_below_band_positive_advantage_is_not_clipped():
    # rho = 0.5, A = 1: -A rho = -0.5, -A clip(rho) = -0.8 -> max = -0.5 (not clipped)
    loss, clipped, _ = surrogate_one(0.5, 1.0)
    assert loss == pytest.approx(-0.5) and not clipped


def test_surrogate_asymmetric_clip():
    # clip_high 0.28 (band [0.8, 1.28]): rho = 1.25, A = 1 -> -1.25, inside; symmetric 0.2 would give -1.2
    assert surrogate_one(1.25, 1.0, 0.2, 0.28)[:2] == (pytest.approx(-1.25), False)
    assert surrogate_one(1.25, 1.0, 0.2, 0.2)[:2] == (pytest.approx(-1.2), True)
    # rho = 1.4, A = 1, band [0.8, 1.28]: max(-1.4, -1.28) = -1.28 (clipped at the high side)
    assert surrogate_one(1.4, 1.0, 0.2, 0.28)[:2] == (pytest.approx(-1.28), True)
    # clip_low 0.3 (band [0.7, 1.2]): rho = 0.75, A = -1 -> 0.75, inside; with clip_low 0.2 -> 0.8, clipped
    assert surrogate_one(0.75, -1.0, 0.3, 0.2)[:2] == (pytest.approx(0.75), False)
    assert surrogate_one(0.75, -1.0, 0.2, 0.2)[:2] == (pytest.approx(0.8), True)


def test_surrogate_broadcasts_sequence_advantages():
    # A = [1, -1] per sequence, on-policy (rho = 1): l = -A on every token -> [[-1, -1], [1, 1]]
    logp = t([[-1.0, -2.0], [-0.5, -0.7]])
    loss, clipped = clipped_surrogate(logp, logp.clone(), t([1.0, -1.0]))
    torch.testing.assert_close(loss, t([[-1.0, -1.0], [1.0, 1.0]]))
    assert clipped.dtype == torch.bool and not clipped.any()
    # per-token advantages [B, T] give the same result as the broadcast
    loss2, _ = clipped_surrogate(logp, logp.clone(), t([[1.0, 1.0], [-1.0, -1.0]]))
    torch.testing.assert_close(loss2, loss)


# ---- aggregate ----------------------------------------------------------------------------------------------
PER_TOKEN = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
MASK = [[1, 1, 1], [1, 0, 0]]          # lengths 3 and 1


def test_aggregate_token_mean():
    # valid tokens 1, 2, 3, 4 -> (1+2+3+4) / 4 = 2.5
    assert aggregate(t(PER_TOKEN), t(MASK), "token-mean").item() == pytest.approx(2.5)


def test_aggregate_seq_mean_token_mean():
    # row means: (1+2+3)/3 = 2 and 4/1 = 4 -> (2 + 4) / 2 = 3.0
    assert aggregate(t(PER_TOKEN), t(MASK), "seq-mean-token-mean").item() == pytest.approx(3.0)


def test_aggregate_seq_mean_token_sum_norm():
    # max_len 4: row sums 6 and 4 -> 6/4 = 1.5 and 4/4 = 1 -> (1.5 + 1) / 2 = 1.25
    assert aggregate(t(PER_TOKEN), t(MASK), "seq-mean-token-sum-norm", max_len=4).item() == pytest.approx(1.25)
    # max_len 3: 6/3 = 2 and 4/3 = 1.3333 -> 1.6667
    assert aggregate(t(PER_TOKEN), t(MASK), "seq-mean-token-sum-norm", max_len=3).item() == pytest.approx(5 / 3)


def test_aggregate_modes_differ_and_bool_mask_works():
    vals = {m: aggregate(t(PER_TOKEN), torch.tensor(MASK, dtype=torch.bool), m, max_len=4).item() for m in AGG_MODES}
    assert vals == {"token-mean": pytest.approx(2.5), "seq-mean-token-mean": pytest.approx(3.0),
                    "seq-mean-token-sum-norm": pytest.approx(1.25)}
    assert len(set(round(v, 9) for v in vals.values())) == 3


def test_aggregate_fully_masked_row_is_zero_not_nan():
    mask = t([[1, 1, 0], [0, 0, 0]])
    # token-mean: (1+2) / 2 = 1.5
    # seq-mean-token-mean: row 0 = 3/2 = 1.5, row 1 = 0 (no tokens) -> (1.5 + 0) / 2 = 0.75
    # seq-mean-token-sum-norm, max_len 4: row 0 = 3/4, row 1 = 0 -> 0.375
    expected = {"token-mean": 1.5, "seq-mean-token-mean": 0.75, "seq-mean-token-sum-norm": 0.375}
    for mode, value in expected.items():
        x = t(PER_TOKEN, requires_grad=True)
        out = aggregate(x, mask, mode, max_len=4)
        out.backward()
        assert out.item() == pytest.approx(value)
        assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all()
    # nothing valid at all -> 0 in every mode
    for mode in AGG_MODES:
        assert aggregate(t(PER_TOKEN), torch.zeros(2, 3), mode, max_len=4).item() == 0.0


def test_aggregate_errors():
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(t(PER_TOKEN), t(MASK), "seq-sum")
    with pytest.raises(ValueError, match="max_len"):
        aggregate(t(PER_TOKEN), t(MASK), "seq-mean-token-sum-norm")


def test_aggregate_sum_and_normaliser_split_over_micro_batches():
    # the engine divides each micro-batch's aggregate_sum by the normaliser of the whole mini-batch:
    # token-mean: sums 6 (row 0) and 4 (row 1), normaliser 4 tokens -> (6 + 4) / 4 = 2.5
    # seq-mean-token-mean: row means 2 and 4, normaliser 2 sequences -> (2 + 4) / 2 = 3
    # seq-mean-token-sum-norm, max_len 4: 6/4 and 4/4 over 2 sequences -> (1.5 + 1) / 2 = 1.25
    x, m = t(PER_TOKEN), t(MASK)
    assert aggregate_normaliser(m, "token-mean") == 4.0
    assert aggregate_normaliser(m, "seq-mean-token-mean") == 2.0 == aggregate_normaliser(m, "seq-mean-token-sum-norm")
    sums = {"token-mean": (6.0, 4.0), "seq-mean-token-mean": (2.0, 4.0), "seq-mean-token-sum-norm": (1.5, 1.0)}
    for mode, (s0, s1) in sums.items():
        assert aggregate_sum(x[:1], m[:1], mode, max_len=4).item() == pytest.approx(s0)
        assert aggregate_sum(x[1:], m[1:], mode, max_len=4).item() == pytest.approx(s1)
        split = aggregate_sum(x[:1], m[:1], mode, 4) + aggregate_sum(x[1:], m[1:], mode, 4)
        split = split / aggregate_normaliser(m, mode)
        assert split.item() == pytest.approx(aggregate(x, m, mode, max_len=4).item())
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_sum(x, m, "seq-sum")


def test_masked_mean():
    # valid 1, 2, 3, 4 -> 2.5; nothing valid -> 0
    assert masked_mean(t(PER_TOKEN), t(MASK)).item() == pytest.approx(2.5)
    assert masked_mean(t(PER_TOKEN), torch.zeros(2, 3)).item() == 0.0


# ---- low_var_kl ---------------------------------------------------------------------------------------------
def test_low_var_kl_values():
    logp = t([[0.0, 0.0, -1.0]])
    ref = t([[LN(2.0), -1.0, -1.0]])
    # d = ref - logp:  ln2 -> 2 - 0.693147 - 1 = 0.306853
    #                  -1  -> e^-1 + 1 - 1 = 0.367879
    #                   0  -> 1 - 0 - 1 = 0           (equal logprobs)
    torch.testing.assert_close(low_var_kl(logp, ref), t([[0.306853, 0.367879, 0.0]]), atol=1e-6, rtol=0)


def test_low_var_kl_is_clamped():
    # d = 20 -> e^20 - 21 = 4.85e8 -> clamped to 10; d = -50 -> d clamped to -20 -> e^-20 + 19 = 19 -> 10
    out = low_var_kl(t([[0.0, 50.0]]), t([[20.0, 0.0]]))
    torch.testing.assert_close(out, t([[10.0, 10.0]]))


# ---- GRPO's token loss + aggregate (what the engine's _micro_loss computes) ------------------------------------
def grpo_pipeline(*overrides):
    return AlgorithmPipeline(load_config(None, list(overrides)).algorithm)


def grpo_loss(logp, old, adv, mask, mode, max_len=None, clip_low=0.2, clip_high=0.2):
    pipe = grpo_pipeline(f"algorithm.loss_agg={mode}", f"algorithm.clip_low={clip_low}",
                         f"algorithm.clip_high={clip_high}")
    per_token, stats = pipe.token_loss(logp, old, adv, mask, {})
    return aggregate(per_token, mask, pipe.cfg.loss_agg, max_len), stats


LOGP = [[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]]
ADV = [2.0, -1.0]
# on-policy, rho = 1: l = -A per token, dl/dlogp = -A; the loss gradient is -A_b * w_bt with weight w:
#   token-mean:              w = m / 4                  -> row 0: -2/4 = -0.5 ;    row 1: +1/4 = 0.25 (first token)
#   seq-mean-token-mean:     w = m / (B * n_b)          -> row 0: -2/(2*3) = -1/3; row 1: +1/(2*1) = 0.5
#   seq-mean-token-sum-norm: w = m / (B * max_len), 4   -> row 0: -2/(2*4) = -0.25; row 1: +1/(2*4) = 0.125
GRADS = {
    "token-mean": [[-0.5, -0.5, -0.5], [0.25, 0.0, 0.0]],
    "seq-mean-token-mean": [[-1 / 3, -1 / 3, -1 / 3], [0.5, 0.0, 0.0]],
    "seq-mean-token-sum-norm": [[-0.25, -0.25, -0.25], [0.125, 0.0, 0.0]],
}
# loss values: token-mean (-2*3 + 1)/4 = -1.25; seq-mean-token-mean (-2 + 1)/2 = -0.5;
#              sum-norm (-6/4 + 1/4)/2 = -0.625
LOSSES = {"token-mean": -1.25, "seq-mean-token-mean": -0.5, "seq-mean-token-sum-norm": -0.625}


@pytest.mark.parametrize("mode", AGG_MODES)
def test_grpo_token_loss_on_policy_gradient_is_minus_advantage_times_weight(mode):
    logp = t(LOGP, requires_grad=True)
    loss, stats = grpo_loss(logp, t(LOGP), t(ADV), t(MASK), mode, max_len=4)
    loss.backward()
    assert loss.item() == pytest.approx(LOSSES[mode])
    torch.testing.assert_close(logp.grad, t(GRADS[mode]))
    assert stats == {"loss/clip_fraction": 0.0}
    assert all(type(v) is float for v in stats.values())


def test_grpo_token_loss_off_policy_clip_fraction():
    # one token off-policy: rho = 1.5 at (0, 0) with A = 1 -> clipped; others rho = 1
    # clip_fraction = 1 clipped / 4 valid = 0.25 (the padded tokens at (1,1), (1,2) have rho = 3 but are masked)
    # token-mean loss: (-1.2 - 1 - 1 - 1) / 4 = -1.05
    old = t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    logp = t([[LN(1.5), 0.0, 0.0], [0.0, LN(3.0), LN(3.0)]])
    loss, stats = grpo_loss(logp, old, t([1.0, 1.0]), t(MASK), "token-mean")
    assert stats["loss/clip_fraction"] == pytest.approx(0.25)
    assert loss.item() == pytest.approx(-1.05)
    # clip_high 0.6 (band [0.8, 1.6]): rho 1.5 is inside -> nothing clipped, loss (-1.5 - 3) / 4 = -1.125
    loss, stats = grpo_loss(logp, old, t([1.0, 1.0]), t(MASK), "token-mean", clip_high=0.6)
    assert stats["loss/clip_fraction"] == 0.0 and loss.item() == pytest.approx(-1.125)


def test_grpo_loss_with_kl():
    # A = 0 so the surrogate is 0; tokens d = ref - logp = [ln 2, -1] -> kl = [0.306853, 0.367879]
    # token-mean kl = 0.674732 / 2 = 0.337366; loss = 0 + 0.1 * 0.337366 = 0.0337366
    logp = t([[0.0, 0.0]])
    ref = t([[LN(2.0), -1.0]])
    mask = t([[1, 1]])
    cfg = load_config(None, ["algorithm.kl_coef=0.1"]).algorithm
    assert cfg.effective_kl_coef == 0.1
    pipe = AlgorithmPipeline(cfg)
    per_token, _ = pipe.token_loss(logp, logp.clone(), t([0.0]), mask, {})
    kl = low_var_kl(logp, ref)
    loss = aggregate(per_token, mask, cfg.loss_agg) + cfg.effective_kl_coef * aggregate(kl, mask, cfg.loss_agg)
    assert loss.item() == pytest.approx(0.0337366, abs=1e-7)
    assert masked_mean(kl, mask).item() == pytest.approx(0.337366, abs=1e-6)
    # seq-mean-token-sum-norm, max_len 4: kl sum 0.674732 / 4 over 1 sequence = 0.168683 -> loss 0.0168683
    assert (0.1 * aggregate(kl, mask, "seq-mean-token-sum-norm", 4)).item() == pytest.approx(0.0168683, abs=1e-7)
    # kl_coef 0 (the default) or CARE (which replaces the KL penalty) -> no KL term
    assert load_config(None, []).algorithm.effective_kl_coef == 0.0
    assert load_config(None, ["algorithm.kl_coef=0.1", "algorithm.advantage=care"]).algorithm.effective_kl_coef == 0.0


def test_grpo_token_loss_float32():
    # the engine's tensors are float32 (the model's log-probs, micro_batch's old log-probs): the loss stays float32
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = grpo_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), "token-mean")
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(-1.0)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, -0.5]]))   # -A / 2 tokens
