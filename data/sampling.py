"""MMR1 Variance-Aware Sampling (arXiv 2509.21268): per-prompt Variance Promotion Scores and the mixture sampler.

VPS(x) = alpha * OVS(x) + beta * TDS(x), min-max normalised over the scored prompts; each batch of B prompts takes
floor(lambda*B) draws with replacement in proportion to VPS and the rest uniformly from a cyclic permutation pool
(the released `MixedCurriculumSampler`). numpy only; NLTK supplies sentence-BLEU and is imported lazily.
"""
from __future__ import annotations

import threading
from collections import Counter

import numpy as np

BLEU_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)  # MMR1's `self_bleu_123`: uni-, bi- and trigram precisions, equal weights


# ---------------------------------------------------------------------------------------------------------------
# Diversity measures over one prompt's N responses (token-id lists)
# ---------------------------------------------------------------------------------------------------------------

def self_bleu(token_ids: list[list[int]]) -> float:
    """Self-BLEU-123: (1/N) sum_i BLEU_123(y_i | {y_j}_{j != i}), smoothing method1 (Chen & Cherry 2014).

    BLEU_123 = BP * exp(sum_{n=1..3} log(p_n) / 3), p_n the clipped n-gram precision
    (a zero count becomes 0.1/|n-grams|).
    Edge cases: N < 2 -> 0.0 (a lone response has no peers to resemble); an empty response scores 0 as hypothesis
    (no n-grams, NLTK's convention). Identical responses of >= 3 tokens score 1.0.
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # lazy: only VPS scoring needs NLTK

    responses = [[int(t) for t in y] for y in token_ids]
    if len(responses) < 2:
        return 0.0
    smooth = SmoothingFunction().method1
    scores = [sentence_bleu(responses[:i] + responses[i + 1:], y, BLEU_WEIGHTS, smoothing_function=smooth)
              for i, y in enumerate(responses)]
    return float(np.mean(scores))


def distinct_n(token_ids: list[list[int]], n: int = 3) -> float:
    """distinct-n = |unique n-grams| / |all n-grams|, pooled over the N responses (n-grams never span two responses).

    No n-grams at all (every response shorter than n) -> 0.0.
    """
    grams = [tuple(int(t) for t in y[i:i + n]) for y in token_ids for i in range(len(y) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


DIVERSITY = {
    "inv_self_bleu": lambda ids: 1.0 - self_bleu(ids),  # the paper's "inverse self-BLEU" (waypoint default)
    "distinct_n": distinct_n,
    "self_bleu": self_bleu,  # the released code's sign: a similarity, so it favours low-diversity prompts
}


def diversity_score(token_ids: list[list[int]], diversity: str = "inv_self_bleu") -> float:
    """TDS(x) = Diversity({y_i}) for the named measure."""
    if diversity not in DIVERSITY:
        raise ValueError(f"unknown diversity {diversity!r}; valid: {sorted(DIVERSITY)}")
    return float(DIVERSITY[diversity](token_ids))


# ---------------------------------------------------------------------------------------------------------------
# Variance Promotion Score
# ---------------------------------------------------------------------------------------------------------------

def outcome_variance(correct) -> np.ndarray:
    """OVS(x) = P(x)(1 - P(x)), P(x) = (1/N) sum_i V(x, y_i), the Bernoulli variance of correctness.
    [prompts, N] -> [prompts]"""
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError(f"correct must be [prompts, N] with N >= 1, got shape {c.shape}")
    if np.any((c < 0) | (c > 1)) or not np.all(np.isfinite(c)):
        raise ValueError("correct must hold values in [0, 1]")
    p = c.mean(axis=1)
    return p * (1.0 - p)


def min_max(v: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(v - min) / (max - min + eps) over the prompts, as released; a constant v maps to all zeros."""
    v = np.asarray(v, dtype=np.float64)
    return (v - v.min()) / (v.max() - v.min() + eps) if v.size else v


def variance_promotion_score(correct, token_ids: list[list[list[int]]], alpha: float = 0.8, beta: float = 0.2,
                             diversity: str = "inv_self_bleu") -> np.ndarray:
    """VPS(x) = alpha * OVS(x) + beta * TDS(x), then min-max normalised over the prompts. -> [prompts] in [0, 1)."""
    if diversity not in DIVERSITY:
        raise ValueError(f"unknown diversity {diversity!r}; valid: {sorted(DIVERSITY)}")
    ovs = outcome_variance(correct)
    n_prompts, n = np.shape(correct)
    if len(token_ids) != n_prompts:
        raise ValueError(f"token_ids has {len(token_ids)} prompts, correct has {n_prompts}")
    for i, ys in enumerate(token_ids):
        if len(ys) != n:
            raise ValueError(f"prompt {i}: {len(ys)} responses in token_ids, {n} in correct")
    # beta = 0 (e.g. the released config) needs no BLEU pass: O(N^2 L) per prompt is the costly part.
    tds = np.array([diversity_score(ys, diversity) for ys in token_ids]) if beta else np.zeros(n_prompts)
    return min_max(alpha * ovs + beta * tds)


# ---------------------------------------------------------------------------------------------------------------
# The mixture sampler
# ---------------------------------------------------------------------------------------------------------------

def interleave(weighted: list[int], uniform: list[int]) -> list[tuple[int, bool]]:
    """Spread both parts evenly over the batch (item i of a part of size m sits at (i + 1/2)/m), weighted first on ties,
    so that any prefix served by next(k < B) holds about the same mix as the whole batch."""
    keyed = [((i + 0.5) / len(weighted), 0, j, True) for i, j in enumerate(weighted)]
    keyed += [((i + 0.5) / len(uniform), 1, j, False) for i, j in enumerate(uniform)]
    return [(j, w) for _, _, j, w in sorted(keyed)]


class VarianceAwareSampler:
    """MMR1 `MixedCurriculumSampler`: batches of B = floor(lambda*B) VPS-weighted draws (with replacement) plus
    B - floor(lambda*B) uniform draws without replacement from a cyclic permutation pool. Same interface as
    `data.sampler.PromptSampler` (next / state_dict / load_state_dict), plus update_scores, set_types and stats.

    Rows need unique "id"s (scores and checkpoints are keyed by them) and a "type". A resumed sampler reproduces the
    uninterrupted row stream when built over the same rows in the same order.
    """

    def __init__(self, rows: list[dict], batch_size: int, mix_ratio: float = 0.5, momentum: float = 0.0,
                 seed: int = 0):
        if not rows:
            raise ValueError("no task rows to sample from")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= mix_ratio <= 1.0 or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"mix_ratio and momentum must lie in [0, 1], got {mix_ratio}, {momentum}")
        self.rows = rows
        self.ids = [str(r["id"]) for r in rows]
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        if len(self.index) != len(rows):
            dupes = sorted(pid for pid, c in Counter(self.ids).items() if c > 1)
            raise ValueError(f"row ids must be unique; duplicated: {dupes[:5]}")
        self.row_types = np.array([str(r["type"]).lower() for r in rows])
        self.batch_size, self.mix_ratio, self.momentum, self.seed = batch_size, mix_ratio, momentum, seed
        self.n_weighted = int(np.floor(mix_ratio * batch_size))  # B_w = floor(lambda * B)
        self._lock = threading.Lock()  # next() runs on the feeder thread; update_scores/set_types on the controller
        self.weights = np.ones(len(rows))  # uniform until the first scoring pass
        self.rng = np.random.default_rng([seed, 1])
        self.types: list[str] | None = None
        self.active = np.arange(len(rows))
        self.pool_epoch = 0  # counts pool permutations (new pass or new type set): the pool's seed
        self.pool_position = 0
        self._pool = self._permutation()
        self.pending: list[tuple[int, bool]] = []  # the rest of the current batch: (row index, from weighted part)
        self.last_batch: list[tuple[int, bool]] = []  # the most recently built batch, for stats and tests
        self._served = self._served_weighted = 0

    # -- internals (callers hold the lock) --------------------------------------------------------------------
    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, 0, self.pool_epoch]).permutation(self.active)

    def _uniform(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            if self.pool_position >= len(self._pool):  # pass done: a fresh permutation, as PromptSampler does
                self.pool_epoch += 1
                self.pool_position = 0
                self._pool = self._permutation()
            out.append(int(self._pool[self.pool_position]))
            self.pool_position += 1
        return out

    def _weighted(self, k: int) -> list[int]:
        w = self.weights[self.active]
        # Min-max normalising a constant VPS (or one scored prompt) zeroes every weight: there is no preference to
        # follow, and a zero-sum distribution is undefined, so the weighted part falls back to uniform.
        p = w / w.sum() if w.sum() > 0 else None
        return [int(i) for i in self.rng.choice(self.active, size=k, replace=True, p=p)] if k else []

    def _build_batch(self) -> None:
        weighted = self._weighted(self.n_weighted)
        uniform = self._uniform(self.batch_size - self.n_weighted)
        self.last_batch = interleave(weighted, uniform)
        self.pending = list(self.last_batch)

    # -- public interface -------------------------------------------------------------------------------------
    def next(self, k: int) -> list[dict]:
        """The next k rows of the batch stream (k need not equal batch_size; a partial batch carries over)."""
        out = []
        with self._lock:
            while len(out) < k:
                if not self.pending:
                    self._build_batch()
                i, from_weighted = self.pending.pop(0)
                out.append(self.rows[i])
                self._served += 1
                self._served_weighted += from_weighted
        return out

    def update_scores(self, prompt_ids: list[str], vps) -> None:
        """w <- mu * w_old + (1 - mu) * w_new for the scored prompts; unscored prompts keep their weight."""
        v = np.asarray(vps, dtype=np.float64).reshape(-1)
        if len(prompt_ids) != len(v):
            raise ValueError(f"{len(prompt_ids)} prompt ids but {len(v)} scores")
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ValueError("scores must be finite and non-negative")
        unknown = [pid for pid in prompt_ids if str(pid) not in self.index]
        if unknown:
            raise ValueError(f"unknown prompt ids: {unknown[:5]}")
        idx = np.array([self.index[str(pid)] for pid in prompt_ids], dtype=np.int64)
        with self._lock:
            self.weights[idx] = self.momentum * self.weights[idx] + (1.0 - self.momentum) * v

    def set_types(self, types: list[str] | None) -> None:
        """Restrict both parts to rows whose lower-cased "type" is in types (None = all): a curriculum stage over VAS.

        A changed type set drops the rest of the current batch (rows of the old stage must not leak into the new
        one) and starts a fresh uniform pool; an unchanged one is a no-op, so the controller may call it every step.
        """
        key = None if types is None else sorted({str(t).lower() for t in types})
        with self._lock:
            if key == self.types:
                return
            active = self._active_for(key)
            self.types, self.active = key, active
            self.pool_epoch += 1
            self.pool_position = 0
            self._pool = self._permutation()
            self.pending = []

    def _active_for(self, types: list[str] | None) -> np.ndarray:
        if types is None:
            return np.arange(len(self.rows))
        active = np.flatnonzero(np.isin(self.row_types, types))
        if active.size == 0:
            raise ValueError(f"no rows of types {types}; present: {sorted(set(self.row_types.tolist()))}")
        return active

    def stats(self) -> dict:
        """Weight spread over the current pool, and the share of rows served since the last call that were weighted."""
        with self._lock:
            w = self.weights[self.active]
            frac = self._served_weighted / self._served if self._served else 0.0
            self._served = self._served_weighted = 0
            return {"vas/weight_min": float(w.min()), "vas/weight_median": float(np.median(w)),
                    "vas/weight_max": float(w.max()), "vas/weighted_fraction": float(frac)}

    def state_dict(self) -> dict:
        """JSON-serialisable: weights by prompt id, the weighted rng, the pool counters, the partial batch and
        the types."""
        with self._lock:
            return {"seed": self.seed, "weights": dict(zip(self.ids, self.weights.tolist())),
                    "rng": self.rng.bit_generator.state, "types": self.types, "pool_epoch": self.pool_epoch,
                    "pool_position": self.pool_position,
                    "pending": [[self.ids[i], bool(w)] for i, w in self.pending]}

    def load_state_dict(self, state: dict) -> None:
        with self._lock:
            self.seed = state["seed"]
            # Ids missing from the checkpoint (rows added since) start at the uniform weight 1.0; ids no longer
            # present are dropped.
            self.weights = np.array([float(state["weights"].get(pid, 1.0)) for pid in self.ids])
            self.rng = np.random.default_rng([self.seed, 1])
            self.rng.bit_generator.state = state["rng"]
            self.types = state["types"]
            self.active = self._active_for(self.types)
            self.pool_epoch, self.pool_position = state["pool_epoch"], state["pool_position"]
            self._pool = self._permutation()
            self.pending = [(self.index[pid], bool(w)) for pid, w in state["pending"] if pid in self.index]
