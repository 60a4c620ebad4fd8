"""MMR1 Variance-Aware Sampling: diversity measures, VPS and the mixture sampler, checked against hand computations."""
import json
import math

import numpy as np
import pytest

from data.sampler import PromptSampler
from data.sampling import (VarianceAwareSampler, distinct_n, diversity_score, interleave, min_max, outcome_variance,
                           self_bleu, variance_promotion_score)

A, B = [1, 2, 3, 4], [1, 2, 3, 5]
# BLEU_123(A | B): p1 = 3/4, p2 = 2/3 ((1,2),(2,3) match), p3 = 1/2 ((1,2,3) matches), equal lengths so BP = 1.
BLEU_AB = (3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3)  # = 4 ** (-1/3) ~ 0.630


# -- diversity ---------------------------------------------------------------------------------------------------

def test_self_bleu_worked_example():
    assert self_bleu([A, B]) == pytest.approx(BLEU_AB)  # symmetric pair: both directions give the same BLEU
    # Against N-1 = 2 references: a disjoint third response adds no matches to A or B and scores 0 itself (p1 = 0).
    assert self_bleu([A, B, [9, 9, 9, 9]]) == pytest.approx(2 / 3 * BLEU_AB)


def test_self_bleu_method1_smoothing_and_brevity_penalty():
    # [1,2,3] vs [1,2,4]: p1 = 2/3, p2 = 1/2, p3 = 0 -> smoothed to 0.1/1 (method1, epsilon 0.1).
    assert self_bleu([[1, 2, 3], [1, 2, 4]]) == pytest.approx((2 / 3 * 1 / 2 * 0.1) ** (1 / 3))
    # [1,2,3] vs [1,2,3,4]: the short one has perfect precision but BP = exp(1 - 4/3); the long one has
    # p = (3/4, 2/3, 1/2) and BP = 1.
    expected = (math.exp(1 - 4 / 3) + BLEU_AB) / 2
    assert self_bleu([[1, 2, 3], [1, 2, 3, 4]]) == pytest.approx(expected)


def test_self_bleu_edge_cases():
    assert self_bleu([A, A, A]) == pytest.approx(1.0)  # identical responses: maximal similarity
    assert self_bleu([A]) == 0.0 and self_bleu([]) == 0.0  # no peers: defined as 0 similarity
    assert self_bleu([[], []]) == 0.0  # empty hypotheses have no n-grams: BLEU 0
    assert self_bleu([[], A]) == 0.0  # A vs an empty reference matches nothing either
    # One-token identical responses: p1 = 1, p2 = p3 = 0.1/1 by smoothing -> 0.01^(1/3), not 1.
    assert self_bleu([[5], [5]]) == pytest.approx(0.01 ** (1 / 3))


def test_distinct_n():
    # 3-grams of A and B: (1,2,3), (2,3,4), (1,2,3), (2,3,5) -> 3 unique of 4.
    assert distinct_n([A, B]) == pytest.approx(3 / 4)
    assert distinct_n([A, A, A]) == pytest.approx(2 / 6)
    assert distinct_n([A, B], n=1) == pytest.approx(5 / 8)
    assert distinct_n([[1, 2], [3]]) == 0.0  # no 3-grams at all
    assert distinct_n([[1, 2], [2, 3]], n=2) == 1.0  # n-grams never span responses: (2,2) is not one


def test_diversity_options_by_name():
    assert diversity_score([A, B], "inv_self_bleu") == pytest.approx(1 - BLEU_AB)
    assert diversity_score([A, B], "self_bleu") == pytest.approx(BLEU_AB)
    assert diversity_score([A, B], "distinct_n") == pytest.approx(3 / 4)
    assert diversity_score([A, A], "inv_self_bleu") == pytest.approx(0.0)  # identical -> minimal diversity
    with pytest.raises(ValueError, match="distinct_n.*inv_self_bleu.*self_bleu"):
        diversity_score([A, B], "edit_distance")


# -- VPS ---------------------------------------------------------------------------------------------------------

def test_outcome_variance():
    ovs = outcome_variance([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert ovs == pytest.approx([0.0, 0.25, 0.0, 0.25 * 0.75])


def test_min_max_on_three_prompts():
    assert min_max(np.array([0.1, 0.3, 0.2])) == pytest.approx([0.0, 1.0, 0.5], abs=1e-7)
    assert min_max(np.array([0.1, 0.3, 0.2])) == pytest.approx([0, 0.2 / (0.2 + 1e-8), 0.1 / (0.2 + 1e-8)])
    assert np.all(min_max(np.array([0.4, 0.4])) == 0.0)  # constant VPS: every weight 0


def test_vps_alpha_beta_weighting():
    same = [[1, 2, 3], [1, 2, 3]]  # TDS = 1 - 1 = 0
    correct = [[1, 1], [1, 0], [1, 1]]
    tokens = [same, same, [A, B]]
    tds = 1 - BLEU_AB
    # raw VPS = (0, 0.25*alpha, beta*tds); the min is 0, so normalising divides by the max.
    for alpha, beta in [(0.8, 0.2), (0.2, 0.8)]:
        raw = np.array([0.0, 0.25 * alpha, beta * tds])
        got = variance_promotion_score(correct, tokens, alpha=alpha, beta=beta)
        assert got == pytest.approx(raw / (raw.max() + 1e-8))
    # (0.8, 0.2): 0.2 vs 0.074 -> the half-correct prompt leads; (0.2, 0.8): 0.05 vs 0.296 -> the diverse one.
    assert np.argmax(variance_promotion_score(correct, tokens)) == 1
    assert np.argmax(variance_promotion_score(correct, tokens, alpha=0.2, beta=0.8)) == 2


def test_vps_ovs_only_and_other_diversities():
    correct = [[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]]
    tokens = [[A, B, A, B]] * 3
    assert variance_promotion_score(correct, tokens, beta=0.0) == pytest.approx([0, 1, 0], abs=1e-7)
    # Same TDS everywhere cancels in min-max, whichever measure: only the OVS difference remains.
    for name in ("distinct_n", "self_bleu", "inv_self_bleu"):
        assert variance_promotion_score(correct, tokens, diversity=name) == pytest.approx([0, 1, 0], abs=1e-7)
    # With beta only, raw self-BLEU prefers the similar pair, inverse self-BLEU the diverse one.
    two = [[1, 1], [1, 1]]
    assert variance_promotion_score(two, [[A, A], [A, B]], 0, 1, "self_bleu") == pytest.approx([1, 0], abs=1e-7)
    assert variance_promotion_score(two, [[A, A], [A, B]], 0, 1, "inv_self_bleu") == pytest.approx([0, 1], abs=1e-7)


def test_vps_shape_errors():
    with pytest.raises(ValueError, match="prompts, N"):
        variance_promotion_score([1, 0], [[A, B]])
    with pytest.raises(ValueError, match="1 prompts"):
        variance_promotion_score([[1, 0], [1, 1]], [[A, B]])
    with pytest.raises(ValueError, match="3 responses"):
        variance_promotion_score([[1, 0]], [[A, B, A]])
    with pytest.raises(ValueError, match="valid"):
        variance_promotion_score([[1, 0]], [[A, B]], diversity="bleu")


# -- sampler -----------------------------------------------------------------------------------------------------

def make_rows(n, types=("torf1",)):
    return [{"id": f"p{i}", "type": types[i % len(types)].upper() if i % 2 else types[i % len(types)]}
            for i in range(n)]


def test_interleave_spreads_parts():
    assert interleave([10, 11], [20, 21]) == [(10, True), (20, False), (11, True), (21, False)]
    assert [w for _, w in interleave([1], [2, 3, 4])] == [False, True, False, False]


def test_mixture_proportions_and_uniform_pool():
    s = VarianceAwareSampler(make_rows(3), batch_size=10, mix_ratio=0.5, seed=3)
    s.update_scores(["p0", "p1", "p2"], np.array([0.0, 1.0, 3.0]))
    n_batches = 2000
    weighted, uniform = [], []
    for _ in range(n_batches):
        rows = s.next(10)
        assert sum(w for _, w in s.last_batch) == 5  # floor(0.5 * 10) from the weighted part, every batch
        assert [r["id"] for r in rows] == [f"p{i}" for i, _ in s.last_batch]
        weighted += [i for i, w in s.last_batch if w]
        uniform += [i for i, w in s.last_batch if not w]
    counts = np.bincount(weighted, minlength=3)
    assert counts[0] == 0  # weight 0 is never drawn
    # 10,000 draws: the sd of the share of p1 is sqrt(0.25*0.75/1e4) ~ 0.0043; 0.02 is ~4.6 sd.
    assert counts[1] / len(weighted) == pytest.approx(0.25, abs=0.02)
    assert counts[2] / len(weighted) == pytest.approx(0.75, abs=0.02)
    # The uniform half: consecutive triples are permutations of all prompts, and passes reshuffle.
    passes = [tuple(uniform[i:i + 3]) for i in range(0, len(uniform) - 2, 3)]
    assert all(sorted(p) == [0, 1, 2] for p in passes)
    assert len(set(passes)) > 1
    assert s.stats()["vas/weighted_fraction"] == pytest.approx(0.5)


def test_next_k_independent_of_batch_size():
    a = VarianceAwareSampler(make_rows(7), batch_size=4, seed=1)
    b = VarianceAwareSampler(make_rows(7), batch_size=4, seed=1)
    ids_a = [r["id"] for r in a.next(12)]
    ids_b = [r["id"] for k in (5, 1, 6) for r in b.next(k)]
    assert ids_a == ids_b


def test_all_zero_weights_fall_back_to_uniform():
    s = VarianceAwareSampler(make_rows(4), batch_size=8, mix_ratio=1.0, seed=0)
    s.update_scores([f"p{i}" for i in range(4)], min_max(np.full(4, 0.3)))  # constant VPS -> all 0
    drawn = {r["id"] for _ in range(50) for r in s.next(8)}
    assert drawn == {"p0", "p1", "p2", "p3"}


def test_momentum_update_and_stats():
    s = VarianceAwareSampler(make_rows(3), batch_size=2, momentum=0.5)
    s.update_scores(["p0"], np.array([0.2]))
    s.update_scores(["p0", "p1"], np.array([0.2, 0.0]))
    w = s.state_dict()["weights"]
    assert w == pytest.approx({"p0": 0.5 * (0.5 * 1 + 0.5 * 0.2) + 0.5 * 0.2, "p1": 0.5, "p2": 1.0})  # 0.4, 0.5, 1
    st = s.stats()
    assert (st["vas/weight_min"], st["vas/weight_median"], st["vas/weight_max"]) == pytest.approx((0.4, 0.5, 1.0))
    assert st["vas/weighted_fraction"] == 0.0  # nothing served yet
    with pytest.raises(ValueError, match="unknown prompt ids"):
        s.update_scores(["nope"], np.array([1.0]))
    with pytest.raises(ValueError, match="2 prompt ids but 1"):
        s.update_scores(["p0", "p1"], np.array([1.0]))


def test_set_types_restricts_both_parts():
    rows = make_rows(12, types=("torf1", "counting2", "planning"))
    s = VarianceAwareSampler(rows, batch_size=4, seed=2)
    s.update_scores([r["id"] for r in rows], np.arange(12) / 11)
    s.next(2)  # leaves half a batch pending: it must not leak past the switch
    s.set_types(["TorF1", "Planning"])
    assert s.pending == []
    twin = VarianceAwareSampler(rows, batch_size=4, seed=2)
    twin.load_state_dict(s.state_dict())
    twin.set_types(["planning", "torf1"])  # the same set again: a no-op, the stream is undisturbed
    assert [r["id"] for r in twin.next(9)] == [r["id"] for r in s.next(9)]
    served = s.next(40)
    assert {r["type"].lower() for r in served} == {"torf1", "planning"}
    stage = [i for i, r in enumerate(rows) if r["type"].lower() in ("torf1", "planning")]
    st = s.stats()  # weights i/11 over the 8 rows of the stage
    assert st["vas/weight_min"] == pytest.approx(min(stage) / 11)
    assert st["vas/weight_max"] == pytest.approx(max(stage) / 11)
    assert st["vas/weight_median"] == pytest.approx(np.median(stage) / 11)
    with pytest.raises(ValueError, match="counting9"):
        s.set_types(["counting9"])
    s.set_types(None)
    assert {r["type"].lower() for r in s.next(60)} == {"torf1", "counting2", "planning"}


def test_resume_reproduces_the_stream_exactly():
    rows = make_rows(9, types=("torf1", "counting2", "planning"))
    a = VarianceAwareSampler(rows, batch_size=5, mix_ratio=0.6, momentum=0.3, seed=7)
    a.update_scores([r["id"] for r in rows], np.linspace(0, 1, 9))
    a.set_types(["torf1", "planning"])
    a.next(7)  # 1 batch and 2 rows of the next: a partial batch is pending
    state = json.loads(json.dumps(a.state_dict()))  # checkpoints are JSON
    b = VarianceAwareSampler(rows, batch_size=5, mix_ratio=0.6, momentum=0.3, seed=7)
    b.load_state_dict(state)
    for s in (a, b):
        s.update_scores(["p0", "p2"], np.array([0.9, 0.1]))
    assert [r["id"] for r in a.next(23)] == [r["id"] for r in b.next(23)]
    for s in (a, b):
        s.set_types(None)
    assert [r["id"] for r in a.next(31)] == [r["id"] for r in b.next(31)]
    assert a.state_dict() == b.state_dict()


def test_vas_lowers_zero_variance_fraction_versus_uniform():
    """P(group of G=8 has zero reward variance) = p^G + (1-p)^G; VAS should draw fewer such prompts."""
    G, rng = 8, np.random.default_rng(0)
    pass_rates = np.array([0.0] * 25 + [1.0] * 25 + [0.5] * 10)
    rows = [{"id": f"q{i}", "type": "planning"} for i in range(len(pass_rates))]
    correct = (rng.random((len(rows), G)) < pass_rates[:, None]).astype(int)  # simulated N=8 scoring rollouts
    tokens = [[list(rng.integers(0, 50, 20)) for _ in range(G)] for _ in rows]
    vps = variance_promotion_score(correct, tokens)
    zero_var = pass_rates ** G + (1 - pass_rates) ** G

    def expected_zero_var(sampler):
        drawn = [int(r["id"][1:]) for r in sampler.next(6000)]
        return zero_var[drawn].mean()

    vas = VarianceAwareSampler(rows, batch_size=64, mix_ratio=0.5, seed=0)
    vas.update_scores([r["id"] for r in rows], vps)
    uniform = expected_zero_var(PromptSampler(rows, seed=0))
    assert uniform == pytest.approx(50 / 60 + 10 / 60 * 2 / 256)  # 100 full passes over the pool
    # Half of each batch is uniform; the weighted half follows VPS, where the 10 prompts at p=0.5 hold ~84% of the
    # weight (the p in {0,1} prompts keep only a small beta*TDS share): ~0.5*0.835 + 0.5*0.17 ~ 0.51.
    weighted_zero_var = (vps * zero_var).sum() / vps.sum()
    got = expected_zero_var(vas)
    # 3000 weighted draws of a 0/1 quantity with mean ~0.17: sd of the batch mean ~0.5*0.0069; 0.02 is ~6 sd.
    assert got == pytest.approx(0.5 * uniform + 0.5 * weighted_zero_var, abs=0.02)
    assert got < uniform - 0.25
