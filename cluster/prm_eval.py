"""`python -m cluster.prm_eval --config X --paths DIR/paths.parquet [--set prm.model=PRM] [--out report.json]`

How well does a PRM tell right steps from wrong ones? On labelled paths from `python -m cluster.build_prm_data`
(held-out problems: build them with another `train.seed` or data seed than the PRM's training data), every step
is scored the way RL and search score it (the configured PRM actor: a generative PRM checkpoint `prm.model`, or
tool-only without one) and compared with its label ("+" / "-"): AUROC over all steps, accuracy of the 0.5
threshold, and the mean score of each class. The tool-only scorer is always reported beside it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ray

from cluster.config import WaypointConfig, add_config_args, config_from_args
from cluster.eval_report import save_report
from cluster.text_table import fixed_width
from rewards.prm.score import auroc


def load_paths(path: str) -> list[dict]:
    import pyarrow.parquet as pq
    rows = pq.read_table(path).to_pylist()
    bad = [i for i, r in enumerate(rows) if len(r.get("steps") or []) != len(r.get("labels") or [])]
    if bad:
        raise ValueError(f"{path}: paths {bad[:5]} have a different number of steps and labels")
    return [r for r in rows if r["steps"]]


def step_scores(prm, paths: list[dict]) -> list[list[float]]:
    """Step k of every path with one, scored after the PRM's own outputs for steps 1..k-1 (as in search); the
    paths of one question go out in one engine call."""
    outputs: list[list[str]] = [[] for _ in paths]
    scores: list[list[float]] = [[] for _ in paths]
    for k in range(max(len(p["steps"]) for p in paths)):
        by_question: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            if len(p["steps"]) > k:
                by_question.setdefault(p["question"], []).append(i)
        calls = [(live, prm.score_next.remote(q, [(paths[i]["steps"][:k], outputs[i], paths[i]["steps"][k])
                                                   for i in live])) for q, live in by_question.items()]
        for live, ref in calls:
            for i, (score, text) in zip(live, ray.get(ref)):
                outputs[i].append(text)
                scores[i].append(score)
    return scores


def discrimination(scores: list[list[float]], paths: list[dict]) -> dict:
    flat = [s for sc in scores for s in sc]
    good = [label == "+" for p in paths for label in p["labels"]]
    pos = [s for s, g in zip(flat, good) if g]
    neg = [s for s, g in zip(flat, good) if not g]
    return {"steps": len(flat), "positive_steps": len(pos), "negative_steps": len(neg),
            "auroc": auroc(flat, good),
            "accuracy_at_0.5": sum((s > 0.5) == g for s, g in zip(flat, good)) / max(len(flat), 1),
            "mean_score_positive": sum(pos) / len(pos) if pos else float("nan"),
            "mean_score_negative": sum(neg) / len(neg) if neg else float("nan")}


def prm_report(cfg: WaypointConfig, paths_file: str) -> dict:
    from cluster.launch import prm_actor, standalone_env
    from cluster.tasks import resolve_policy
    paths = load_paths(paths_file)
    if not paths:
        raise ValueError(f"{paths_file}: no labelled paths")
    policy, _, engine = resolve_policy(cfg)
    env = standalone_env(cfg)
    report = {"paths_file": paths_file, "paths": len(paths), "scorers": {}}
    tool_only = cfg.model_copy(update={"prm": cfg.prm.model_copy(update={"model": None})})
    for name, c in ([("configured", cfg)] if cfg.prm.model else []) + [("tool_only", tool_only)]:
        prm = prm_actor(c, policy, engine, env)
        try:
            t0 = time.perf_counter()
            scores = step_scores(prm, paths)
            stats = ray.get(prm.stats.remote())
        finally:
            ray.kill(prm, no_restart=True)
        report["scorers"][name] = {"prm": c.prm.model or "tool-only", **discrimination(scores, paths),
                                   "seconds": time.perf_counter() - t0, "prm_stats": stats}
    return report


PRM_EVAL_COLUMNS = [("scorer", "<44"), ("steps", ">7"), ("+", ">6"), ("-", ">6"), ("AUROC", ">8.3f"),
                    ("acc@0.5", ">9.3f"), ("mean+", ">8.3f"), ("mean-", ">8.3f")]


def report_table(report: dict) -> str:
    rows = [[str(s["prm"])[-44:], s["steps"], s["positive_steps"], s["negative_steps"], s["auroc"],
             s["accuracy_at_0.5"], s["mean_score_positive"], s["mean_score_negative"]]
            for s in report["scorers"].values()]
    return "\n".join([f"PRM step discrimination on {report['paths']} labelled paths ({report['paths_file']})",
                      *fixed_width(PRM_EVAL_COLUMNS, rows)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.prm_eval", description=__doc__.splitlines()[0])
    add_config_args(ap)
    ap.add_argument("--paths", required=True, help="paths.parquet written by cluster.build_prm_data")
    ap.add_argument("--out", default=None, help="JSON report (default <run_dir>/prm_eval.json)")
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    if cfg is None:
        return 2
    try:
        report = prm_report(cfg, args.paths)
    except (FileNotFoundError, ValueError) as e:
        print(f"prm_eval error: {e}", file=sys.stderr)
        return 2
    save_report(report, args.out or Path(cfg.train.run_dir) / "prm_eval.json", report_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
