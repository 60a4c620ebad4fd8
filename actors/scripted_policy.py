"""ScriptedStepPolicy: a policy whose steps are right or wrong by construction, for GroundedPRM label building
(`prm.mcts.policy: scripted`) where the real model never reaches an answer (SmolLM2-135M on the synthetic
problems: 0 positive paths in 4 problems) and for the tests of the label search.

Step k of a request is step k of the problem's reference solution (`reference_response`, steps separated by blank
lines), corrupted in sample j of a call with seed s when (s + j) % 3 == 2: its last integer is off by one, so an
equation is refuted by the tool or a final answer is wrong. The same `complete` interface as a rollout actor.
"""
from __future__ import annotations

import re

import ray

from actors.generation import Completion


def corrupt(step: str) -> str:
    """The step with its last integer off by one (unchanged when it has none)."""
    found = list(re.finditer(r"\d+", step))
    if not found:
        return step
    m = found[-1]
    return step[:m.start()] + str(int(m.group()) + 1) + step[m.end():]


def scripted_steps(requests: list[dict], n: int, seeds: list[int]) -> list[list[Completion]]:
    out = []
    for r, seed in zip(requests, seeds):
        reference = r["row"]["reference_response"].split("\n\n")
        k = r.get("prefix", "").count("\n\n")
        group = []
        for j in range(n):
            if k >= len(reference):
                group.append(Completion("", True, [], []))
                continue
            step = corrupt(reference[k]) if (seed + j) % 3 == 2 else reference[k]
            group.append(Completion(step, "boxed" in step, [], []))
        out.append(group)
    return out


@ray.remote(num_cpus=0)
class ScriptedStepPolicy:
    def complete(self, requests, n, temperature, max_new_tokens, stop, top_logprobs=0, seeds=None):
        return scripted_steps(requests, n, seeds or [0] * len(requests))

    def ready(self) -> bool:
        return True
