"""python -m cluster.search --config X: reward-guided greedy search against plain sampling
(docs/algorithms.md#groundedprm-reward-guided-search).

Guided: for every problem, sample `prm.search.candidates` next steps from the policy (T = search.temperature),
keep the one the PRM scores highest (ties: the first), append it, repeat until a step holds the final answer,
the policy ends its turn, or `max_steps`. Plain: one whole response per problem at the same temperature. Both
are scored by the task's reward function in the sandboxed reward process; the table compares their accuracy.
The PRM is the configured one: a generative PRM checkpoint (`prm.model`) or the tool-only verifier scores.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import ray

from cluster.config import WaypointConfig, add_config_args, config_from_args
from cluster.eval_report import save_report
from cluster.stepwise import join_steps, math_policy_and_problems, sample_next_steps, step_separator
from rewards.prm.mcts import is_terminal


def guided_responses(cfg: WaypointConfig, rows: list[dict], rollout: list, prm) -> tuple[list[str], list[int]]:
    """(response, steps taken) per problem; every live problem's candidates go out in one batch per move."""
    s = cfg.prm.search
    sep = step_separator(cfg.prm.step_mode)
    steps: list[list[str]] = [[] for _ in rows]
    outputs: list[list[str]] = [[] for _ in rows]      # the PRM's own turns for the kept steps (generative mode)
    live = list(range(len(rows)))
    for move in range(s.max_steps):
        if not live:
            break
        proposals = sample_next_steps(rollout, [(rows[i], steps[i], s.candidates) for i in live], s.temperature,
                                      s.step_max_tokens, sep, seed=cfg.train.seed * 1_000_003 + move * 100_000)
        scored = [prm.score_next.remote(rows[i]["question"], [(steps[i], outputs[i], p.text) for p in props])
                  for i, props in zip(live, proposals)]
        still = []
        for i, props, ref in zip(live, proposals, scored):
            results = ray.get(ref)
            best = int(np.argmax([score for score, _ in results]))
            steps[i].append(props[best].text)
            outputs[i].append(results[best][1])
            if not (is_terminal(props[best].text, props[best].finished) or not props[best].text):
                still.append(i)
        live = still
    return [join_steps(st, sep).rstrip() for st in steps], [len(st) for st in steps]


def plain_responses(cfg: WaypointConfig, rows: list[dict], rollout: list) -> list[str]:
    """One whole response per problem, same temperature and token budget as the guided search."""
    s = cfg.prm.search
    chunks = [list(range(len(rows)))[a::len(rollout)] for a in range(len(rollout))]
    calls = [(c, actor.complete.remote([{"row": rows[i]} for i in c], 1, s.temperature,
                                       s.max_steps * s.step_max_tokens, None, 0, [cfg.train.seed + i for i in c]))
             for actor, c in zip(rollout, chunks) if c]
    out = [""] * len(rows)
    for c, ref in calls:
        for i, (completion,) in zip(c, ray.get(ref)):
            out[i] = completion.text
    return out


def score_responses(cfg: WaypointConfig, rows: list[dict], responses: list[str]) -> list[dict]:
    """The task's reward function on each response, in the reward actor's sandboxed child with its time limit."""
    from actors.reward import SCORERS
    from actors.scoring_sandbox import SampleScorer
    from cluster.launch import reward_options
    scorer = SampleScorer(SCORERS[cfg.data.task], reward_options(cfg), cfg.reward.sample_timeout_s,
                          cfg.reward.startup_timeout_s)
    try:
        out = []
        for row, text in zip(rows, responses):
            result, reason = scorer(text, row)
            out.append({"accuracy": 0.0, "format": 0.0, "failure": reason} if result is None else
                       {"accuracy": float(result["accuracy"]), "format": float(result["format"]), "failure": None})
        return out
    finally:
        scorer.close()


def search_report(cfg: WaypointConfig) -> dict:
    from cluster.launch import prm_actor, standalone_rollout
    s = cfg.prm.search
    policy, engine, rows = math_policy_and_problems(cfg, s.problems, "reward-guided search")
    rollout, env = standalone_rollout(cfg, policy, engine, False)
    prm = prm_actor(cfg, policy, engine, env)
    try:
        t0 = time.perf_counter()
        guided, n_steps = guided_responses(cfg, rows, rollout, prm)
        t1 = time.perf_counter()
        plain = plain_responses(cfg, rows, rollout)
        t2 = time.perf_counter()
        prm_stats = ray.get(prm.stats.remote())
    finally:
        for a in rollout + [prm]:
            ray.kill(a, no_restart=True)
    methods = {}
    for name, responses, seconds in (("prm_guided", guided, t1 - t0), ("plain_sampling", plain, t2 - t1)):
        scores = score_responses(cfg, rows, responses)
        methods[name] = {"accuracy": float(np.mean([x["accuracy"] for x in scores])),
                         "format_rate": float(np.mean([x["format"] for x in scores])),
                         "scoring_failures": sum(x["failure"] is not None for x in scores), "seconds": seconds}
    methods["prm_guided"]["steps_mean"] = float(np.mean(n_steps))
    return {"problems": len(rows), "prm": "tool-only" if not cfg.prm.model else cfg.prm.model,
            "candidates": s.candidates, "temperature": s.temperature, "methods": methods, "prm_stats": prm_stats,
            "examples": [{"id": r["id"], "guided": g, "plain": p} for r, g, p in list(zip(rows, guided, plain))[:3]]}


def report_table(report: dict) -> str:
    lines = [f"reward-guided search, {report['problems']} problems, PRM {report['prm']}, "
             f"{report['candidates']} candidates per step at T={report['temperature']}",
             f"{'method':<16}{'accuracy':>10}{'format':>10}{'steps':>8}{'seconds':>10}"]
    for name, m in report["methods"].items():
        steps = f"{m['steps_mean']:.1f}" if "steps_mean" in m else "-"
        lines.append(f"{name:<16}{m['accuracy']:>10.3f}{m['format_rate']:>10.3f}{steps:>8}{m['seconds']:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.search", description=__doc__.splitlines()[0])
    add_config_args(ap)
    ap.add_argument("--out", default=None, help="JSON report (default <run_dir>/search.json)")
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    if cfg is None:
        return 2
    report = search_report(cfg)
    save_report(report, args.out or Path(cfg.train.run_dir) / "search.json", report_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
