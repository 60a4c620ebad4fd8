"""The configured algorithm with the terms that compose with it: reward terms (GRPO-CARE's bonus) are added to
the total reward before the algorithm's advantages, token terms (GroundedPRM's process advantages) after."""
from __future__ import annotations

from data.trajectory import TrajectoryGroup
from learner.algorithms.base import Advantages, get_algorithm, load_plugins, reward_matrix
from learner.algorithms.care import CareBonus
from learner.algorithms.config import AlgorithmConfig
from learner.algorithms.process import ProcessAdvantage


class AlgorithmPipeline:
    def __init__(self, cfg: AlgorithmConfig):
        load_plugins(cfg.plugins)          # a Ray worker imports the plugin modules itself
        self.cfg = cfg
        self.algorithm = get_algorithm(cfg.advantage)(cfg)
        self.reward_terms = [CareBonus(cfg.care)] if cfg.care_on else []
        self.token_terms = [ProcessAdvantage(cfg.process)] if cfg.process.coef > 0 else []

    def advantages(self, groups: list[TrajectoryGroup]) -> Advantages:
        rewards = reward_matrix(groups)
        metrics: dict[str, float] = {}
        for term in self.reward_terms:
            bonus, m = term(groups)
            rewards, metrics = rewards + bonus, {**metrics, **m}
        adv = self.algorithm.advantages(groups, rewards)
        adv.metrics = {**metrics, **adv.metrics}
        for term in self.token_terms:
            extra = term(groups)
            adv.token = extra if adv.token is None else [[a + b for a, b in zip(x, y)]
                                                         for x, y in zip(adv.token, extra)]
        return adv

    def token_loss(self, logprobs, old_logprobs, advantages, mask, inputs):
        return self.algorithm.token_loss(logprobs, old_logprobs, advantages, mask, inputs)

