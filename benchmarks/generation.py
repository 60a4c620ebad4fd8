"""`python -m benchmarks.generation [--config X] [--set k=v] [--questions N] [--models a,b] [--json PATH]`

Generated tokens per second of evaluation (greedy, one answer per question, scored by the reward actors) on the
config's held-out synthetic set, two ways through the same actors: `serial` sends calls of
rollout.prompts_per_call questions, which each actor runs one after another (how evaluation worked before
batching), and `batched` gives each actor its whole share in one call (cluster.evaluate.score_rows now). Also
reports the engine start-up and whether both ways gave the same answers. `--models`: `config` is the config's
model; any other name (e.g. tiny-qwen2) replaces model.name.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cluster.config import WaypointConfig, add_config_args, config_from_args
from cluster.text_table import fixed_width

MODES = ("serial", "batched")


def bench_model(cfg: WaypointConfig, questions: int, warmup: int = 2) -> dict:
    """Both modes on the first `questions` eval questions, after a warm-up call on `warmup` of them."""
    import ray

    from cluster.evaluate import eval_config, score_rows
    from cluster.launch import reward_actor, standalone_rollout
    from cluster.tasks import load_task_rows, resolve_policy

    policy, vision, engine = resolve_policy(cfg)
    rows = load_task_rows(eval_config(cfg, "synthetic"), vision)
    if questions > len(rows):
        raise ValueError(f"--questions {questions}: the eval set has only {len(rows)}")
    rows = rows[:questions]
    t0 = time.perf_counter()
    rollout, env = standalone_rollout(cfg, policy, engine, vision)
    reward = [reward_actor(cfg, env) for _ in range(cfg.reward.num_actors)]
    try:
        ray.get([a.ready.remote() for a in rollout + reward])
        start_s = time.perf_counter() - t0
        score_rows(rollout, reward, rows[:warmup], 1, 0.0)
        out: dict = {"model": cfg.model.name, "engine": engine, "questions": len(rows),
                     "rollout_actors": len(rollout), "prompts_per_call": cfg.rollout.prompts_per_call,
                     "max_new_tokens": cfg.rollout.max_new_tokens, "engine_start_s": start_s}
        answers = {}
        for mode in MODES:
            chunk = cfg.rollout.prompts_per_call if mode == "serial" else None
            t = time.perf_counter()
            results = score_rows(rollout, reward, rows, 1, 0.0, with_tokens=True, chunk_size=chunk)
            seconds = time.perf_counter() - t
            tokens = sum(len(r["token_ids"]) for r in results)
            answers[mode] = [(r["prompt_id"], r["token_ids"]) for r in results]
            out[mode] = {"seconds": seconds, "generated_tokens": tokens, "tokens_per_s": tokens / seconds,
                         "questions_per_s": len(rows) / seconds,
                         "accuracy": sum(r["accuracy"] for r in results) / len(results)}
        out["speedup"] = out["batched"]["tokens_per_s"] / out["serial"]["tokens_per_s"]
        out["same_answers"] = answers["serial"] == answers["batched"]
        return out
    finally:
        for a in rollout + reward:
            ray.kill(a, no_restart=True)


GENERATION_COLUMNS = [("model", "<24"), ("engine", ">7"), ("N", ">5"), ("start s", ">9.1f"), ("mode", ">9"),
                      ("seconds", ">9.1f"), ("tokens", ">8d"), ("tok/s", ">8.1f"), ("q/s", ">7.2f"),
                      ("acc", ">7.3f"), ("speedup", ">9"), ("same", ">6")]


def table(results: list[dict]) -> str:
    rows = []
    for r in results:
        for mode in MODES:
            m = r[mode]
            batched = mode == "batched"
            rows.append([r["model"], r["engine"], r["questions"], r["engine_start_s"], mode, m["seconds"],
                         m["generated_tokens"], m["tokens_per_s"], m["questions_per_s"], m["accuracy"],
                         f"{r['speedup']:.1f}x" if batched else None, str(r["same_answers"]) if batched else None])
    head, *body = fixed_width(GENERATION_COLUMNS, rows)
    return "\n".join([head, "-" * len(head), *body])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.generation", description=__doc__.splitlines()[0])
    add_config_args(ap)
    ap.set_defaults(config="configs/cpu_smollm2.yaml")
    ap.add_argument("--questions", type=int, default=400, help="first N eval questions (default 400)")
    ap.add_argument("--models", default="config,tiny-qwen2",
                    help="comma-separated: 'config' (the config's model) and/or model names (default: both)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    base = config_from_args(args)
    if base is None:
        return 2
    from cluster.launch import start_cluster
    start_cluster(base)
    results = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        cfg = base if name == "config" else base.model_copy(
            update={"model": base.model.model_copy(update={"name": name})})
        results.append(bench_model(cfg, args.questions))
        print(table(results[-1:]), flush=True)
    print(f"\nevaluation generation, greedy, 1 answer per question ({args.config})")
    print(table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"config": args.config, "overrides": args.overrides,
                                               "results": results}, indent=2))
        print(f"[waypoint] wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
