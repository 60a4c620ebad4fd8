"""`python -m benchmarks.prm_loop [--config configs/cpu_smollm2_prm.yaml] [--train-problems 24] [--heldout-problems 8]`

The GroundedPRM loop, closed on the CPU, as the five CLIs a user runs (each printed, each in its own process):

1. `cluster.build_prm_data` on training problems: MCTS step labels from the sandboxed tool and the final answer,
   with the config's policy (`prm.mcts.policy`: the model, or the scripted reference-steps policy);
   `conversations.jsonl` is the generative PRM's SFT data;
2. `cluster.build_prm_data` again on held-out problems (another data seed): the labelled steps to judge PRMs by;
3. `cluster.sft` of the generative PRM on (1)'s conversations (base: `--prm-base`);
4. `cluster.prm_eval` on (2): AUROC of the trained PRM, of the untrained base as PRM, and of the tool-only scorer;
5. `cluster.search` on the held-out problems: reward-guided search with the trained PRM against plain sampling.

Results: benchmarks/results/prm_loop.{json,md} (--out).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.learning_curve import _run, _sets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.prm_loop", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/cpu_smollm2_prm.yaml")
    ap.add_argument("--prm-base", default="smollm2-135m-instruct", help="model the PRM is fine-tuned from")
    ap.add_argument("--train-problems", type=int, default=24)
    ap.add_argument("--heldout-problems", type=int, default=8)
    ap.add_argument("--sft-epochs", type=int, default=3)
    ap.add_argument("--sft-minutes", type=float, default=10.0, help="PRM SFT time budget (epochs: the bound)")
    ap.add_argument("--sft-lr", type=float, default=2e-5)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="section.key=value for every stage")
    ap.add_argument("--work", default="runs/prm_loop")
    ap.add_argument("--out", default="benchmarks/results/prm_loop")
    args = ap.parse_args(argv)
    work, py = Path(args.work), sys.executable
    work.mkdir(parents=True, exist_ok=True)
    labels = {}
    for split, problems, seed in (("train", args.train_problems, 0), ("heldout", args.heldout_problems, 7919)):
        out = work / f"labels_{split}"
        sets = [*args.sets, f"prm.mcts.problems={problems}", f"data.seed={seed}", f"prm.mcts.out_dir={out}"]
        _run([py, "-m", "cluster.build_prm_data", "--config", args.config, *_sets(sets)], work / f"labels_{split}.log")
        labels[split] = json.loads((out / "summary.json").read_text())
    sft_out = work / "prm_sft"
    sft_sets = [*args.sets, f"model.name={args.prm_base}", "sft.source=chat",
                f"sft.path={work / 'labels_train' / 'conversations.jsonl'}", f"sft.out_dir={sft_out}",
                f"sft.epochs={args.sft_epochs}", f"sft.max_minutes={args.sft_minutes}", f"learner.lr={args.sft_lr}"]
    _run([py, "-m", "cluster.sft", "--config", args.config, *_sets(sft_sets)], work / "prm_sft.log")
    sft = json.loads((sft_out / "summary.json").read_text())
    trained = sft["model"]
    evals = {}
    for name, prm in (("trained", trained), ("untrained", args.prm_base)):
        out = work / f"prm_eval_{name}.json"
        _run([py, "-m", "cluster.prm_eval", "--config", args.config, "--paths",
              str(work / "labels_heldout" / "paths.parquet"), "--out", str(out),
              *_sets([*args.sets, f"prm.model={prm}"])], work / f"prm_eval_{name}.log")
        evals[name] = json.loads(out.read_text())
    search_out = work / "search.json"
    _run([py, "-m", "cluster.search", "--config", args.config, "--out", str(search_out),
          *_sets([*args.sets, f"prm.model={trained}", "data.seed=7919",
                  f"prm.search.problems={args.heldout_problems}"])], work / "search.log")
    search = json.loads(search_out.read_text())
    scorers = {"trained PRM": evals["trained"]["scorers"]["configured"],
               "untrained PRM": evals["untrained"]["scorers"]["configured"],
               "tool-only": evals["trained"]["scorers"]["tool_only"]}
    results = {"config": args.config, "prm_base": args.prm_base, "labels": labels,
               "sft": {k: sft[k] for k in ("examples", "steps", "heldout_loss", "model", "seconds")},
               "discrimination": scorers, "search": search["methods"], "search_problems": search["problems"]}
    lines = [f"labels: train {labels['train'].get('positive', 0)} positive / {labels['train'].get('negative', 0)} "
             f"negative paths on {labels['train']['problems']} problems; held-out "
             f"{labels['heldout'].get('positive', 0)} / {labels['heldout'].get('negative', 0)} on "
             f"{labels['heldout']['problems']}",
             f"PRM SFT: {sft['steps']} steps, held-out loss {sft['heldout_loss'][0]['heldout_loss']:.3f} -> "
             f"{sft['heldout_loss'][-1]['heldout_loss']:.3f}", "",
             "| scorer | held-out steps (+/-) | AUROC | accuracy at 0.5 | mean score + | mean score - |",
             "|---|---|---|---|---|---|"]
    for name, s in scorers.items():
        lines.append(f"| {name} | {s['steps']} ({s['positive_steps']}/{s['negative_steps']}) | {s['auroc']:.3f} | "
                     f"{s['accuracy_at_0.5']:.3f} | {s['mean_score_positive']:.3f} | {s['mean_score_negative']:.3f} |")
    lines += ["", f"| search ({search['problems']} held-out problems) | accuracy | format | seconds |",
              "|---|---|---|---|"]
    for name, m in search["methods"].items():
        lines.append(f"| {name} | {m['accuracy']:.3f} | {m['format_rate']:.3f} | {m['seconds']:.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(results, indent=2))
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
