"""What an engine returns for one sampled response, before it becomes a `Sample` in a group."""
from __future__ import annotations

from typing import NamedTuple


class GeneratedSample(NamedTuple):
    token_ids: list[int]      # response tokens, the stop token included (the policy must learn to stop)
    logprobs: list[float]     # behaviour log-probability of each response token
    text: str                 # decoded without special tokens
    finish_reason: str        # "stop" | "length"
