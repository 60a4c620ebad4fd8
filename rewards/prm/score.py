"""From step verdicts or PRM generations to step scores, and from step scores to a sample's process reward.

GroundedPRM (docs/algorithms.md#groundedprm-step-scores) reads a generative PRM's judgement of step k as

    s_k = p(Right) / (p(Right) + p(Wrong))

from the top-k log-probs at the LAST position where a label token was generated. If only one label is among
the top k, the smallest top-k log-prob stands in for the other (an upper bound on its probability); if no label
was generated at all, s_k = 0.5. Tool-only mode scores a step from the verifier: verified 1, refuted 0,
not checkable `neutral`. Pure: stdlib only.
"""
from __future__ import annotations

import math

AGGREGATIONS = ("min", "mean", "last", "product")
TOOL_SCORES = {"verified": 1.0, "refuted": 0.0}


def label_probability(top: dict[str, float], right: str = "Right", wrong: str = "Wrong") -> tuple[float, str]:
    """(s, how): how = "both" | "right_only" | "wrong_only" | "neither" (s = 0.5). Tokens match on their
    stripped text, so " Right" and "Right" are the same label."""
    lp_right = lp_wrong = None
    for token, lp in top.items():
        word = token.strip()
        if word == right and (lp_right is None or lp > lp_right):
            lp_right = lp
        elif word == wrong and (lp_wrong is None or lp > lp_wrong):
            lp_wrong = lp
    if lp_right is None and lp_wrong is None:
        return 0.5, "neither"
    floor = min(top.values())
    how = "both" if lp_right is not None and lp_wrong is not None else "right_only" if lp_right is not None \
        else "wrong_only"
    lp_right = floor if lp_right is None else lp_right
    lp_wrong = floor if lp_wrong is None else lp_wrong
    # p_r / (p_r + p_w) = sigmoid(lp_r - lp_w); exp only of a non-positive number, so no overflow at any gap
    gap = lp_right - lp_wrong
    if gap >= 0:
        return 1.0 / (1.0 + math.exp(-gap)), how
    return math.exp(gap) / (1.0 + math.exp(gap)), how


def generated_step_score(tokens: list[str], top_logprobs: list[dict[str, float]], right: str = "Right",
                         wrong: str = "Wrong") -> tuple[float, str]:
    """Score of one PRM turn: label_probability at the last generated label token; (0.5, "no_label") if none."""
    for pos in range(len(tokens) - 1, -1, -1):
        if tokens[pos].strip() in (right, wrong) and pos < len(top_logprobs):
            return label_probability(top_logprobs[pos], right, wrong)
    return 0.5, "no_label"


def tool_step_score(verdict: str, neutral: float = 0.5) -> float:
    """Tool-only mode: verified 1, refuted 0, anything else (not checkable, timeout) `neutral`."""
    return TOOL_SCORES.get(verdict, neutral)


def aggregate_step_scores(scores: list[float], how: str = "min") -> float:
    """A sample's process reward from its step scores: min (a chain is as good as its worst step), mean,
    last, or product (the probability that every step is right). A response with no steps scores 0."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown step aggregation {how!r}; valid: {list(AGGREGATIONS)}")
    if not scores:
        return 0.0
    if how == "min":
        return min(scores)
    if how == "mean":
        return sum(scores) / len(scores)
    if how == "last":
        return scores[-1]
    return math.prod(scores)


def step_end_tokens(step_ends: list[int], token_ends: list[int]) -> list[int]:
    """Index of the token that holds each step's last character (step end offset e: the first token whose end
    offset is >= e), so a step reward lands on the step's final token. Steps past the tokens map to the last."""
    out, k = [], 0
    last = max(len(token_ends) - 1, 0)
    for e in step_ends:
        while k < len(token_ends) and token_ends[k] < e:
            k += 1
        out.append(min(k, last))
    return out


def auroc(scores: list[float], positive: list[bool]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative, ties
    counting one half (the Mann-Whitney U statistic over n_pos * n_neg). nan when either class is empty."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return float("nan")
    ranked = sorted(scores)
    # mid-rank of every distinct value (1-based), so tied scores share their rank
    ranks: dict[float, float] = {}
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1] == ranked[i]:
            j += 1
        ranks[ranked[i]] = (i + j) / 2 + 1
        i = j + 1
    u = sum(ranks[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))
