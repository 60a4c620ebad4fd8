"""What an engine returns: a sampled response for training, or a free completion for search and judging."""
from __future__ import annotations

from typing import NamedTuple


class GeneratedSample(NamedTuple):
    token_ids: list[int]      # response tokens, the stop token included (the policy must learn to stop)
    logprobs: list[float]     # behaviour log-probability of each response token
    text: str                 # decoded without special tokens
    finish_reason: str        # "stop" | "length"


class Completion(NamedTuple):
    """A continuation that is read, not trained on (MCTS steps, PRM rationales, reward-guided search)."""
    text: str                             # decoded, cut before the first stop string
    finished: bool                        # the model ended its turn (EOS), not a stop string or the length cap
    tokens: list[str]                     # decoded text of each generated token (when top_logprobs was asked)
    top_logprobs: list[dict[str, float]]  # per position: decoded token -> log-prob of the k most likely


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """(text before the earliest stop string, whether one occurred)."""
    hits = [text.find(s) for s in stop or [] if s and s in text]
    return (text[:min(hits)], True) if hits else (text, False)
