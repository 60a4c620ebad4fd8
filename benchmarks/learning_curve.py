"""`python -m benchmarks.learning_curve [--config configs/cpu_smollm2_curve.yaml] [--minutes 60] [--arms rl,sft,sft_rl]`

Does a real model get better at reading the map? Each arm trains SmolLM2-135M-Instruct for the same budget of
training minutes (start-up, export and evaluation not counted; `train.max_minutes` / `sft.max_minutes` stop at a
step boundary), then the untrained model and every arm's final policy are evaluated greedily on the same
held-out questions (networks from another seed than training's; `cluster.evaluate --data synthetic`):

- `rl`: GRPO from the pretrained model (`python -m cluster.train`);
- `sft`: supervised fine-tuning on the training rows' reference responses (`python -m cluster.sft`, source
  task_rows): RewardMap's SFT baseline;
- `sft_rl`: half the budget SFT (the cold start), then half RL from its output (MMR1's recipe).

Every stage is the CLI a user would run, in its own process (its own local Ray), so each command is printed and
can be rerun by hand. The table puts each accuracy beside its 95% interval, the best constant answer of each type
and chance; "beats" is claimed only where the intervals do not overlap. Results: benchmarks/results/
learning_curve_<minutes>min.{json,md} (--out), rewritten after every arm. A rerun with the same settings keeps
the arms (and the untrained evaluation) already in that file and runs only the missing ones, so the three
60-minute arms can be spread over several sittings or survive a killed run; --fresh starts over.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"rl": (("rl", 1.0),), "sft": (("sft", 1.0),), "sft_rl": (("sft", 0.5), ("rl", 0.5))}


def _run(cmd: list[str], log: Path) -> float:
    """One CLI stage; its output goes to `log`; a failing stage stops the benchmark naming its log."""
    print("$ " + shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"stage failed (exit {rc}); see {log}:\n" + log.read_text()[-2000:])
    return time.perf_counter() - t0


def _sets(pairs: list[str]) -> list[str]:
    return [a for kv in pairs for a in ("--set", kv)]


def run_stage(kind: str, config: str, minutes: float, policy: str | None, out: Path, lr: float,
              extra: list[str]) -> dict:
    """Train one stage for `minutes`; returns {kind, steps, policy (HF dir), wall_s}."""
    out.mkdir(parents=True, exist_ok=True)
    base = [f"model.name={policy}"] if policy else []
    if kind == "sft":
        sets = [*base, "sft.source=task_rows", f"sft.out_dir={out}", f"sft.max_minutes={minutes}",
                f"learner.lr={lr}", *extra]
        wall = _run([sys.executable, "-m", "cluster.sft", "--config", config, *_sets(sets)], out / "stage.log")
        summary = json.loads((out / "summary.json").read_text())
        return {"kind": kind, "steps": summary["steps"], "epochs": summary["epochs_run"], "policy": summary["model"],
                "heldout_loss": [summary["heldout_loss"][0]["heldout_loss"],
                                 summary["heldout_loss"][-1]["heldout_loss"]], "wall_s": wall}
    sets = [*base, f"train.run_dir={out}", f"train.max_minutes={minutes}", "train.steps=1000000",
            "train.progress=false", f"learner.lr={lr}", *extra]
    wall = _run([sys.executable, "-m", "cluster.train", "--config", config, *_sets(sets)], out / "stage.log")
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = records[: max(1, len(records) // 10)], records[-max(1, len(records) // 10):]

    def mean(rs, key):
        return sum(r.get(key, 0.0) for r in rs) / len(rs)
    return {"kind": kind, "steps": steps, "policy": str(out / "checkpoint" / f"step-{steps:08d}" / "hf"),
            "reward_first_tenth": mean(first, "reward/total"), "reward_last_tenth": mean(last, "reward/total"),
            "no_signal_steps": summary["no_signal_steps"], "wall_s": wall}


def evaluate(config: str, policy: str | None, out: Path, extra: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cluster.evaluate", "--config", config, "--data", "synthetic",
           "--out", str(out / "eval.json"), *_sets(extra)] + (["--checkpoint", policy] if policy else [])
    wall = _run(cmd, out / "eval.log")
    return {**json.loads((out / "eval.json").read_text()), "wall_s": wall}


def _above(lo_hi_a, lo_hi_b) -> bool:
    """a's interval lies entirely above b's."""
    return lo_hi_a[0] > lo_hi_b[1]


def verdicts(report: dict, untrained: dict) -> dict:
    o, u = report["overall"], untrained["overall"]
    out = {"beats_untrained": _above(o["accuracy_interval"], u["accuracy_interval"]),
           "beats_constant": _above(o["accuracy_interval"], o["constant"]["interval"])}
    for name, t in report["by_type"].items():
        out[f"{name}_beats_constant"] = _above(t["accuracy_interval"], t["constant"]["interval"])
        if "chance" in t and t["formatted"]:
            out[f"{name}_formatted_beats_chance"] = t["formatted_interval"][0] > t["chance"]
    return out


def _ci(v) -> str:
    return "-" if v[0] != v[0] else f"[{v[0]:.3f}, {v[1]:.3f}]"


def _top(t: dict) -> str:
    if "top_answer" not in t:
        return "-"
    answer, share = t["top_answer"]
    return f"`{answer}` {share:.2f}" if answer else f"(none) {share:.2f}"


def markdown(results: dict) -> str:
    head = ("| policy | steps | question type | n | accuracy | 95% CI | best constant | 95% CI | format | "
            "acc. among formatted | 95% CI | chance | most frequent answer |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, arm in results["policies"].items():
        steps = " + ".join(f"{s['kind']} {s['steps']}" for s in arm.get("stages", [])) or "-"
        rep = arm["eval"]
        for tname, t in [*rep["by_type"].items(), ("all", rep["overall"])]:
            chance = f"{t['chance']:.3f}" if "chance" in t else "-"
            fmt_acc = f"{t['formatted_accuracy']:.3f}" if t["formatted"] else "-"
            lines.append(f"| {name} | {steps} | {tname} | {t['samples']} | {t['accuracy']:.3f} | "
                         f"{_ci(t['accuracy_interval'])} | {t['constant']['accuracy']:.3f} | "
                         f"{_ci(t['constant']['interval'])} | {t['format_rate']:.3f} | {fmt_acc} | "
                         f"{_ci(t['formatted_interval'])} | {chance} | {_top(t)} |")
    lines.append("")
    for name, arm in results["policies"].items():
        if "verdicts" in arm:
            yes = [k for k, v in arm["verdicts"].items() if v]
            lines.append(f"- {name}: " + (", ".join(yes) if yes else "beats nothing with non-overlapping intervals"))
    return "\n".join(lines)


def settings(args) -> dict:
    """What makes two runs' results comparable: resumed arms must have been trained and evaluated alike."""
    return {"config": args.config, "minutes_per_arm": args.minutes, "sets": args.sets,
            "lr": {"sft": args.sft_lr, "rl": args.rl_lr}, "eval_networks": args.eval_networks}


def previous_results(path: Path, wanted: dict) -> dict:
    """The policies of an earlier run with the same settings, or {} (none, or other settings: said, not mixed)."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if old.get("settings") != wanted:
        print(f"[learning_curve] {path} has other settings ({old.get('settings')}); starting over", flush=True)
        return {}
    return old.get("policies", {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.learning_curve", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/cpu_smollm2_curve.yaml")
    ap.add_argument("--minutes", type=float, default=60.0, help="training minutes per arm (all stages together)")
    ap.add_argument("--arms", default="rl,sft,sft_rl")
    ap.add_argument("--sft-lr", type=float, default=2e-5)
    ap.add_argument("--rl-lr", type=float, default=5e-6)
    ap.add_argument("--eval-networks", type=int, default=50, help="held-out networks (8 questions per network)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value for every stage")
    ap.add_argument("--work", default="runs/learning_curve", help="where stages write their runs")
    ap.add_argument("--out", default=None, help="results prefix (default benchmarks/results/learning_curve_<N>min)")
    ap.add_argument("--fresh", action="store_true", help="ignore the arms an earlier run left in --out")
    args = ap.parse_args(argv)
    out = Path(args.out or f"benchmarks/results/learning_curve_{args.minutes:g}min")
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        ap.error(f"unknown arms {unknown}; known: {list(ARMS)}")
    work, json_path = Path(args.work), Path(str(out) + ".json")
    results = {"settings": settings(args), "policies": {}}
    done = {} if args.fresh else previous_results(json_path, results["settings"])
    eval_sets = [*args.sets, f"data.n_networks={args.eval_networks}"]
    untrained = done["untrained"]["eval"] if "untrained" in done else evaluate(
        args.config, None, work / "untrained", eval_sets)
    results["policies"]["untrained"] = {"eval": untrained}
    results["policies"].update({a: done[a] for a in ARMS if a in done})
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2))
    for arm in arms:
        if arm in done:
            print(f"[learning_curve] {arm}: kept from {json_path}", flush=True)
            continue
        shutil.rmtree(work / arm, ignore_errors=True)      # an arm cut short earlier restarts from the model
        policy, stages = None, []
        for i, (kind, share) in enumerate(ARMS[arm]):
            lr = args.sft_lr if kind == "sft" else args.rl_lr
            stage = run_stage(kind, args.config, args.minutes * share, policy, work / arm / f"{i}-{kind}", lr,
                              args.sets)
            stages.append(stage)
            policy = stage["policy"]
        report = evaluate(args.config, policy, work / arm / "eval", eval_sets)
        results["policies"][arm] = {"stages": stages, "eval": report, "verdicts": verdicts(report, untrained)}
        json_path.write_text(json.dumps(results, indent=2))                     # after every arm: nothing lost
    table = markdown(results)
    Path(str(out) + ".md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
