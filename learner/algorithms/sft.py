"""Supervised fine-tuning as an algorithm on the same learner engine: the per-token loss is the negative
log-likelihood of the given response tokens (assistant turns), aggregated token-mean:

    L = - (1 / sum_t m_t) sum_t m_t log pi(y_t | x, y_<t)

Advantages and old log-probs play no part. `python -m cluster.sft` uses it for a GroundedPRM judge and for a
cold start of the policy; as an RL `algorithm.advantage` it would just imitate the sampled responses.
"""
from __future__ import annotations

import numpy as np

from learner.algorithms.base import Advantages, Algorithm, register_algorithm
from learner.losses import masked_mean


@register_algorithm
class SFT(Algorithm):
    name = "sft"

    def advantages(self, groups, rewards) -> Advantages:
        return Advantages(np.zeros_like(rewards))

    def token_loss(self, logprobs, old_logprobs, advantages, mask, inputs):
        return -logprobs, {"loss/nll": float(masked_mean(-logprobs.detach(), mask))}
