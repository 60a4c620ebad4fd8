"""Step-at-a-time generation through the rollout actors, shared by the PRM label builder and reward-guided search.

A "step" is what the policy writes before the next step separator (a blank line, or a newline for
`prm.step_mode: newline`), matching `rewards.prm.steps.split_steps`. Requests of many problems go out together:
the same n and prefix style share one `complete` call, split evenly across the actors, which run in parallel.
"""
from __future__ import annotations

import ray

from cluster.config import WaypointConfig
from rewards.prm.mcts import StepProposal


def math_policy_and_problems(cfg: WaypointConfig, problems: int, tool: str) -> tuple[str, str, list[dict]]:
    """(policy path, engine, problem rows) for a stepwise tool: math problems only (`problems` synthetic ones
    when data.source is synthetic), and a text policy (steps are sampled as text)."""
    from cluster.tasks import load_task_rows, resolve_policy
    if cfg.data.task != "math":
        raise ValueError(f"{tool} works on math problems: set data.task=math")
    if cfg.data.source == "synthetic":
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"math_problems": problems})})
    policy, vision, engine = resolve_policy(cfg)
    if vision:
        raise ValueError(f"{tool} samples text steps: use a text policy")
    return policy, engine, load_task_rows(cfg, vision)[:problems]


def step_separator(step_mode: str) -> str:
    return "\n" if step_mode == "newline" else "\n\n"


def join_steps(steps: list[str], separator: str) -> str:
    """The assistant text holding `steps`, ready for the next one."""
    return "".join(s + separator for s in steps)


def sample_next_steps(actors: list, requests: list[tuple[dict, list[str], int]], temperature: float,
                      max_new_tokens: int, separator: str, seed: int) -> list[list[StepProposal]]:
    """For each (row, steps so far, n): n proposals for the next step. An empty proposal (the policy stopped or
    wrote only whitespace) is kept, finished, so a search can end a path on it rather than loop."""
    by_n: dict[int, list[int]] = {}
    for i, (_, _, n) in enumerate(requests):
        by_n.setdefault(n, []).append(i)
    out: list[list[StepProposal] | None] = [None] * len(requests)
    calls = []
    for n, idx in by_n.items():
        chunks = [idx[a::len(actors)] for a in range(len(actors))]
        for actor, chunk in zip(actors, chunks):
            if not chunk:
                continue
            reqs = [{"row": requests[i][0], "prefix": join_steps(requests[i][1], separator)} for i in chunk]
            seeds = [seed + i * n for i in chunk]          # spaced by n: vLLM seeds sample j with seed + j
            calls.append((chunk, actor.complete.remote(reqs, n, temperature, max_new_tokens, [separator], 0, seeds)))
    for chunk, ref in calls:
        for i, completions in zip(chunk, ray.get(ref)):
            out[i] = [StepProposal(c.text.strip(), c.finished or not c.text.strip()) for c in completions]
    return out
