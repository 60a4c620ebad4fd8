"""python -m cluster.build_prm_data --config X: GroundedPRM step labels by MCTS (docs/algorithms.md#groundedprm-mcts).

One `rewards.prm.mcts.search` generator per problem; this driver serves their requests in rounds, so every
problem's pending policy call goes out in one batch across the rollout actors:

    NextSteps   -> rollout actors (`complete`, stop at the step separator), parallel across problems
    CheckStep   -> sandboxed SymPy verifier (verified +1 / refuted -1 / not checkable 0), then the judge model
                   (when `prm.mcts.judge` is set), which sees the tool result and answers [True] or [False]
    CheckAnswer -> sandboxed answer equivalence against the problem's \\boxed{} ground truth

Output in `prm.mcts.out_dir`: `paths.parquet` (step-labelled paths), `conversations.jsonl` (the rationale-format
SFT conversations of `rewards.prm.rationale`) and `summary.json` (counts, rounds, tool time).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import ray

from cluster.config import WaypointConfig, add_config_args, config_from_args
from cluster.stepwise import math_policy_and_problems, sample_next_steps, step_separator
from rewards.answer import boxed_content
from rewards.math_answer import math_ground_truth
from rewards.prm.mcts import CheckAnswer, CheckStep, MCTSSettings, NextSteps, StepCheck, search
from rewards.prm.rationale import find_label, verify_text

TOOL_VALUES = {"verified": 1, "refuted": -1}
JUDGE_TRUE, JUDGE_FALSE = "[True]", "[False]"


def tool_check(verifier, step: str) -> tuple[StepCheck, str]:
    """StepCheck from the verifier alone, and the verdict kind."""
    verdict = verifier.verify_step(step)
    claim = next((c for c in verdict.claims if c.verdict == verdict.verdict), None) or \
        (verdict.claims[0] if verdict.claims else None)
    expression, result = (claim.expression, claim.result) if claim else ("", "")
    value = TOOL_VALUES.get(verdict.verdict, 0)
    why = {1: f"The tool confirms {expression}", -1: f"The tool shows {expression} is false ({result})"}.get(
        value, "The tool could not check this step" if expression else "This step makes no checkable claim")
    return StepCheck(value, verify_text(verdict.verdict, expression, result), why), verdict.verdict


def judge_messages(question: str, steps: list[str], step: str, verify: str) -> list[dict]:
    previous = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps)) or "(none)"
    return [{"role": "user", "content": (
        f"Problem: {question}\nPrevious steps:\n{previous}\nNew step: {step}\nTool: {verify}\n"
        f"Is the new step correct? Give a one-sentence reason, then end with {JUDGE_TRUE} or {JUDGE_FALSE}.")}]


class RequestServer:
    """Answers the searches' requests: the policy through rollout actors, checks through the sandbox."""

    def __init__(self, cfg: WaypointConfig, rollout: list, judge: list, verifier):
        self.cfg, self.rollout, self.judge, self.verifier = cfg, rollout, judge, verifier
        self.counts: Counter = Counter()
        self.seed = cfg.train.seed * 1_000_003
        self.separator = step_separator(cfg.prm.step_mode)

    def serve(self, pending: dict[str, object], rows: dict[str, dict]) -> dict[str, object]:
        """One answer per pending request (problem id -> request)."""
        m = self.cfg.prm.mcts
        answers: dict[str, object] = {}
        policy = [(pid, r) for pid, r in pending.items() if isinstance(r, NextSteps)]
        if policy:
            proposals = sample_next_steps(self.rollout, [(rows[pid], r.steps, r.n) for pid, r in policy],
                                          m.policy_temperature, m.step_max_tokens, self.separator, self.seed)
            self.seed += sum(r.n for _, r in policy) * 1_000
            answers.update({pid: p for (pid, _), p in zip(policy, proposals)})
            self.counts["policy_calls"] += len(policy)
        checks = [(pid, r) for pid, r in pending.items() if isinstance(r, CheckStep)]
        for pid, r in checks:
            answers[pid], kind = tool_check(self.verifier, r.step)
            self.counts[f"step_{kind}"] += 1
        if checks and self.judge:
            self._judge(checks, answers, rows)
        for pid, r in pending.items():
            if isinstance(r, CheckAnswer):
                given = boxed_content(r.step)
                ok = given is not None and self.verifier.answers_equivalent(given, math_ground_truth(rows[pid]))
                answers[pid] = bool(ok)
                self.counts["answers_correct" if ok else "answers_wrong"] += 1
        return answers

    def _judge(self, checks: list, answers: dict, rows: dict) -> None:
        """The judge model's [True]/[False] replaces the tool value; an unreadable verdict keeps the tool's."""
        m = self.cfg.prm.mcts
        reqs = [{"messages": judge_messages(rows[pid]["question"], r.steps, r.step, answers[pid].verify)}
                for pid, r in checks]
        done = ray.get(self.judge[0].complete.remote(reqs, 1, m.judge_temperature, m.judge_max_tokens))
        for (pid, _), (c,) in zip(checks, done):
            verdict = find_label(c.text, JUDGE_TRUE, JUDGE_FALSE)
            if verdict is None:
                self.counts["judge_unreadable"] += 1
                continue
            tool = answers[pid]
            answers[pid] = StepCheck(1 if verdict else -1, tool.verify, c.text.split(JUDGE_TRUE)[0].split(
                JUDGE_FALSE)[0].strip() or tool.rationale)
            self.counts["judge_true" if verdict else "judge_false"] += 1


def run_searches(rows: list[dict], settings: MCTSSettings, server: RequestServer) -> dict[str, object]:
    """Every problem's search to the end, serving all pending requests together each round."""
    searches = {r["id"]: search(MCTSSettings(**{**settings.__dict__, "seed": settings.seed + i}))
                for i, r in enumerate(rows)}
    by_id = {r["id"]: r for r in rows}
    pending = {pid: next(gen) for pid, gen in searches.items()}
    trees = {}
    while pending:
        answers = server.serve(pending, by_id)
        for pid, answer in answers.items():
            try:
                pending[pid] = searches[pid].send(answer)
            except StopIteration as stop:
                trees[pid] = stop.value
                del pending[pid]
    return trees


def write_outputs(out_dir: Path, rows: list[dict], trees: dict, right: str, wrong: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rewards.prm.labels import label_paths
    out_dir.mkdir(parents=True, exist_ok=True)
    records, totals = [], Counter()
    with open(out_dir / "conversations.jsonl", "w", encoding="utf-8") as conv:
        for row in rows:
            tree = trees[row["id"]]
            paths, counts = label_paths(tree, row["id"])
            totals.update(counts)
            totals[f"stop_{tree.stop_reason}"] += 1
            totals["rounds"] += tree.rounds
            for k, p in enumerate(paths):
                rec = p.record()
                records.append({"problem_id": p.problem_id, "question": row["question"], "polarity": p.polarity,
                                "steps": p.steps, "scores": [float(s) for s in p.scores], "labels": p.labels,
                                "verify": [c["verify"] for c in rec["checks"]],
                                "rationale": [c["rationale"] for c in rec["checks"]],
                                "check_values": [int(c["value"]) for c in rec["checks"]],
                                "answer_correct": p.answer_correct, "full_length": p.full_length})
                conv.write(json.dumps({"id": f"{p.problem_id}-{p.polarity}-{k}",
                                       "messages": p.conversation(row["question"], right, wrong)}) + "\n")
    table = pa.Table.from_pylist(records) if records else pa.table({"problem_id": pa.array([], pa.string())})
    pq.write_table(table, out_dir / "paths.parquet")
    return {"problems": len(rows), "paths": len(records), **dict(totals)}


def build(cfg: WaypointConfig) -> dict:
    from cluster.launch import rollout_actor, standalone_env, standalone_rollout
    from rewards.prm.verify import ToolVerifier
    m = cfg.prm.mcts
    policy, engine, rows = math_policy_and_problems(cfg, m.problems, "the PRM label search")
    if m.policy == "scripted":
        from actors.scripted_policy import ScriptedStepPolicy
        env = standalone_env(cfg)
        rollout, policy = [ScriptedStepPolicy.options(runtime_env=env).remote()], "scripted"
    else:
        rollout, env = standalone_rollout(cfg, policy, engine, False)
    judge = []
    if m.judge:
        from learner.model_zoo import resolve_model
        judge_path = resolve_model(m.judge, cache_dir=cfg.model.cache_dir, seed=cfg.model.seed)
        judge = [rollout_actor(cfg, judge_path, engine, False, cfg.rollout.num_actors, env)]
    settings = MCTSSettings(child_nums=m.child_nums, simulation_depth=m.simulation_depth, max_rounds=m.max_rounds,
                            exploration=m.exploration, decay=m.decay, paths_per_label=m.paths_per_label,
                            selection=m.selection, seed=cfg.train.seed)
    t0 = time.perf_counter()
    verifier = ToolVerifier(cfg.prm.tool_timeout_s, cfg.prm.tool_memory_mb)
    try:
        server = RequestServer(cfg, rollout, judge, verifier)
        trees = run_searches(rows, settings, server)
        summary = write_outputs(Path(m.out_dir), rows, trees, cfg.prm.right_label, cfg.prm.wrong_label)
        summary.update({**dict(server.counts), "tool": verifier.stats(), "seconds": time.perf_counter() - t0,
                        "policy": policy, "judge": m.judge, "settings": settings.__dict__})
    finally:
        verifier.close()
        for a in rollout + judge:
            ray.kill(a, no_restart=True)
    (Path(m.out_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.build_prm_data", description=__doc__.splitlines()[0])
    add_config_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    if cfg is None:
        return 2
    s = build(cfg)
    print(f"[waypoint] {s['problems']} problems, {s['rounds']} MCTS rounds: {s.get('positive', 0)} positive and "
          f"{s.get('negative', 0)} negative labelled paths ({s.get('dropped_sign', 0)} dropped for sign "
          f"disagreement, {s.get('over_limit', 0)} over the per-problem limit) in {s['seconds']:.1f} s")
    print(f"[waypoint] wrote {cfg.prm.mcts.out_dir}/paths.parquet, conversations.jsonl, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
