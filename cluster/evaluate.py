"""`python -m cluster.evaluate --config X [--checkpoint Y] [--data Z] [--samples N] [--out report.json]`

Greedy (or N-sample) generation through rollout actors, scored by the map-VQA reward in reward actors. Reports
accuracy per question type and per city difficulty with 95% intervals, beside the best constant answer of each
type on the same rows and (closed-set types) chance; ReasonMap's difficulty-weighted accuracy, the planning
detail score and the answer-format rate; a printed table and a JSON file (`cluster/eval_report.py`).

--checkpoint: a Hugging Face model directory, or a run's checkpoint directory (`<run_dir>/checkpoint`) whose
  DeepSpeed learner state is consolidated onto the config's model (ZeRO 0-3). Omitted: the config's model.
--data: `synthetic` (a held-out split: other networks than training's), `real` (the 25 cities), or
  ReasonMap-style rows: a parquet / JSON / JSONL file or folder, a `datasets` save_to_disk folder or a hub id.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cluster.config import WaypointConfig, add_config_args, config_from_args
from cluster.eval_report import evaluation_report, report_table
from cluster.export import export_policy
from data.dataset import is_hub_id

HELDOUT_SEED_OFFSET = 1_000_003   # synthetic eval networks come from another seed than the training ones


# ---- generation and scoring through the actors -----------------------------------------------------------
def actor_shares(count: int, actors: int) -> list[range]:
    """Contiguous, near-equal index ranges of `count` rows, one per actor (empty ones left out)."""
    base, extra = divmod(count, actors)
    bounds = [0]
    for a in range(actors):
        bounds.append(bounds[-1] + base + (a < extra))
    return [range(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def score_rows(rollout: list, reward: list, rows: list[dict], samples: int, temperature: float,
               seeds: list[int] | None = None, with_tokens: bool = False,
               chunk_size: int | None = None) -> list[dict]:
    """Generate `samples` answers per row (greedy at temperature 0) and score them; one dict per sample, in row
    order. Used by this CLI, by evaluation during training and by VAS scoring passes (seeds, token ids).

    Each rollout actor gets its whole share of the rows in one `generate` call, and its engine schedules them
    (vLLM batches continuously; the hf engine splits by rollout.hf_max_batch). `chunk_size`: instead, calls
    of that many rows dealt round-robin to the actors, which run them one after another (the behaviour before
    batching, kept for benchmarks/generation.py)."""
    import ray
    if chunk_size is None:
        calls = [(rollout[a], share) for a, share in enumerate(actor_shares(len(rows), len(rollout)))]
    else:
        calls = [(rollout[(i // chunk_size) % len(rollout)], range(i, min(i + chunk_size, len(rows))))
                 for i in range(0, len(rows), chunk_size)]
    refs = []
    for actor, idx in calls:
        part_seeds = None if seeds is None else [seeds[i] for i in idx]
        out = actor.generate.options(num_returns=len(idx)).remote([rows[i] for i in idx], part_seeds, samples,
                                                                   temperature)
        for i, ref in zip(idx, [out] if len(idx) == 1 else list(out)):
            refs.append(reward[i % len(reward)].score.options(num_returns=2).remote(ref)[0])
    results = []
    for group in ray.get(refs):
        row = group.row
        truth = None if row.get("answer") is None or row.get("type") == "planning" else str(row["answer"])
        for k in range(group.size):
            results.append({"prompt_id": group.prompt_id, "type": str(row.get("type", "")),
                            "difficulty_city": str(row.get("difficulty_city", "")), "truth": truth,
                            **{c: float(group.rewards[c][k]) for c in ("format", "accuracy", "detail", "weight")},
                            "answer": group.answers[k] if group.answers else "",
                            "failure": group.reward_failures[k] if group.reward_failures else None,
                            **({"token_ids": group.samples[k].token_ids} if with_tokens else {})})
    return results


def eval_config(cfg: WaypointConfig, data: str) -> WaypointConfig:
    """The config with its data section pointed at the evaluation set."""
    if data == "synthetic":
        update = {"source": "synthetic", "seed": cfg.data.seed + HELDOUT_SEED_OFFSET}
    elif data == "real":
        update = {"source": "real"}
    elif Path(data).exists() or is_hub_id(data):
        update = {"source": "parquet", "path": data}
    else:
        raise FileNotFoundError(f"--data {data}: not 'synthetic', 'real', an existing file or folder, or a hub id")
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=update)})


def evaluate(cfg: WaypointConfig, checkpoint: str | None, data: str = "synthetic", samples: int = 1,
             temperature: float = 0.0, out: str | None = None) -> dict:
    import ray

    from cluster.launch import reward_actor, standalone_rollout
    from cluster.tasks import load_task_rows, resolve_policy

    base_path, vision, engine = resolve_policy(cfg)
    out_path = Path(out or Path(cfg.train.run_dir) / "eval.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    policy = export_policy(checkpoint, base_path, out_path.parent / "eval_policy") if checkpoint \
        else base_path
    ecfg = eval_config(cfg, data)
    rows = load_task_rows(ecfg, vision)
    rollout, env = standalone_rollout(cfg, policy, engine, vision)
    reward = [reward_actor(cfg, env) for _ in range(cfg.reward.num_actors)]
    try:
        t0 = time.perf_counter()
        results = score_rows(rollout, reward, rows, samples, temperature)
        report = evaluation_report(results)
    finally:
        for a in rollout + reward:
            ray.kill(a, no_restart=True)
    report["meta"] = {"checkpoint": checkpoint, "policy": policy, "data": data, "rows": len(rows),
                      "samples_per_prompt": samples, "temperature": temperature, "seconds": time.perf_counter() - t0}
    out_path.write_text(json.dumps(report, indent=2))
    return {**report, "path": str(out_path)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.evaluate", description=__doc__.splitlines()[0])
    add_config_args(ap)
    ap.add_argument("--checkpoint", default=None, help="HF model dir or <run_dir>/checkpoint (default: the base model)")
    ap.add_argument("--data", default="synthetic", help="synthetic | real | path to parquet/JSON(L)")
    ap.add_argument("--samples", type=int, default=1, help="answers per question (1: greedy)")
    ap.add_argument("--temperature", type=float, default=None, help="default: 0 (greedy) for 1 sample, else 1")
    ap.add_argument("--out", default=None, help="JSON report path (default <run_dir>/eval.json)")
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    if cfg is None:
        return 2
    temperature = args.temperature if args.temperature is not None else (0.0 if args.samples == 1 else 1.0)
    report = evaluate(cfg, args.checkpoint, args.data, args.samples, temperature, args.out)
    print(report_table(report, f"{args.data} ({report['meta']['rows']} questions, {args.samples} sample(s) each, "
                               f"checkpoint {args.checkpoint or 'none'})"))
    print(f"[waypoint] report: {report['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
