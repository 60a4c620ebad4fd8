"""The evaluation report (pure: numpy only): accuracy with 95% intervals, beside the two numbers it has to beat.

- **constant-answer baseline**: per question type, the share of questions that the single best fixed answer of
  that type gets right on the same rows (e.g. always `\\boxed{yes}` on TorF). A group holding several types uses
  each type's own best constant, i.e. the policy "read the question type, ignore the map". Planning has no
  constant answer (baseline 0). A model "reads the map" only where its interval lies above this one.
- **chance** (closed-set types only: TorF 1/2, Counting1 1/4): what a uniformly random answer in the format
  scores, the bar for `formatted_accuracy`, the accuracy among answers that were in the type's format.

Intervals: Wilson score intervals for a proportion of independent 0/1 outcomes; with several samples per prompt
the unit is the prompt (its mean accuracy) and the interval is the normal one on those means.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

Z95 = 1.959963984540054
CHANCE = {"torf1": 0.5, "torf2": 0.5, "counting1": 0.25}
_LETTERS = "abcd"


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (nan, nan) for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: list[float]) -> tuple[float, float]:
    """95% interval of the mean of per-unit values in [0, 1]: Wilson when every value is 0 or 1, else normal."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if np.all((v == 0) | (v == 1)):
        return wilson_interval(float(v.sum()), int(v.size))
    half = Z95 * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else float("inf")
    return max(0.0, float(v.mean()) - half), min(1.0, float(v.mean()) + half)


def constant_answer_text(qtype: str, truth: str) -> str:
    """How the constant answer reads in a response (TorF truth 1 -> yes; Counting1 index 2 -> c)."""
    if qtype.startswith("torf"):
        return {"1": "yes", "0": "no"}.get(truth, truth)
    if qtype == "counting1" and truth.isdigit() and int(truth) < len(_LETTERS):
        return _LETTERS[int(truth)]
    return truth


def constant_baseline(items: list[dict]) -> dict:
    """Best constant answer per type over the group's prompts: {accuracy, interval, answers {type: answer}}."""
    truths: dict[str, dict[str, str | None]] = defaultdict(dict)
    for s in items:
        truths[s["type"]][s["prompt_id"]] = s.get("truth")
    hits, prompts, answers = 0, 0, {}
    for qtype, by_prompt in sorted(truths.items()):
        prompts += len(by_prompt)
        counts: dict[str, int] = defaultdict(int)
        for t in by_prompt.values():
            if t is not None:
                counts[t] += 1
        if counts:
            best = max(sorted(counts), key=lambda t: counts[t])
            hits += counts[best]
            answers[qtype] = constant_answer_text(qtype, best)
    lo, hi = wilson_interval(hits, prompts)
    return {"accuracy": hits / prompts, "interval": [lo, hi], "answers": answers}


def _top_answer(items: list[dict]) -> list:
    """[the most frequent extracted answer, its share of the samples]: a policy that says "no" to 97% of the
    questions has learned a constant, whatever its accuracy."""
    counts: dict[str, int] = defaultdict(int)
    for s in items:
        counts[str(s.get("answer", ""))] += 1
    best = max(sorted(counts), key=lambda a: counts[a])
    return [best, counts[best] / len(items)]


def group_summary(items: list[dict]) -> dict:
    acc = np.array([s["accuracy"] for s in items], dtype=np.float64)
    w = np.array([s["weight"] for s in items], dtype=np.float64)
    per_prompt: dict[str, list[float]] = defaultdict(list)
    for s in items:
        per_prompt[s["prompt_id"]].append(s["accuracy"])
    formatted = [s["accuracy"] for s in items if s["format"] > 0]
    out = {"samples": len(items), "prompts": len(per_prompt), "accuracy": float(acc.mean()),
           "accuracy_interval": list(mean_interval([float(np.mean(v)) for v in per_prompt.values()])),
           "pass_at_n": float(np.mean([max(v) for v in per_prompt.values()])),
           "weighted_accuracy": float((w * acc).sum() / w.sum()) if w.sum() > 0 else float("nan"),
           "format_rate": float(np.mean([s["format"] for s in items])),
           "formatted": len(formatted),
           "formatted_accuracy": float(np.mean(formatted)) if formatted else float("nan"),
           "formatted_interval": list(wilson_interval(float(np.sum(formatted)), len(formatted))),
           "constant": constant_baseline(items),
           "top_answer": _top_answer(items),
           "failures": sum(1 for s in items if s.get("failure"))}
    types = {s["type"] for s in items}
    if len(types) == 1 and next(iter(types)) in CHANCE:
        out["chance"] = CHANCE[next(iter(types))]
    plans = [s["detail"] for s in items if s["type"] == "planning"]
    if plans:
        out["detail"] = float(np.mean(plans))
    return out


def evaluation_report(samples: list[dict]) -> dict:
    """Aggregate per-sample scores {prompt_id, type, difficulty_city, format, accuracy, detail, weight, truth}.

    accuracy = mean correctness over samples (avg@n); pass@n = share of prompts with a correct sample;
    weighted_accuracy = sum_i W_i acc_i / sum_i W_i with RewardMap's difficulty weight W (city: easy 1.0,
    middle 1.2, hard 1.5; +0.5 for planning with transfers), the paper's difficulty-weighted accuracy;
    detail = mean planning detail reward (docs/algorithms.md#rewardmap-detail-reward) over planning samples;
    constant / chance: the module docstring. `truth` is the row's ground-truth answer (None: planning).
    """
    if not samples:
        raise ValueError("nothing to report: no scored samples")
    groups: dict[str, dict[str, list]] = {"type": defaultdict(list), "difficulty": defaultdict(list)}
    for s in samples:
        groups["type"][s["type"]].append(s)
        groups["difficulty"][s["difficulty_city"]].append(s)
    return {"overall": group_summary(samples),
            "by_type": {k: group_summary(v) for k, v in sorted(groups["type"].items())},
            "by_difficulty": {k: group_summary(v) for k, v in sorted(groups["difficulty"].items())}}


def _interval(values) -> str:
    lo, hi = values
    return f"{'-':>13s}" if math.isnan(lo) else f"[{lo:.3f},{hi:.3f}]"


def report_table(report: dict, title: str = "evaluation") -> str:
    """The report as a fixed-width text table (what the CLI prints): every accuracy beside its 95% interval,
    the best constant answer's accuracy on the same rows, and (closed-set types) chance."""
    sampled = report["overall"]["samples"] > report["overall"]["prompts"]     # pass@n says more than acc
    head = (f"{'':22s} {'n':>5s} {'acc':>6s} {'95% CI':>13s} {'const':>6s} {'95% CI':>13s} {'format':>6s} "
            f"{'acc|fmt':>7s} {'chance':>6s} {'w-acc':>6s} {'detail':>7s}" + (f" {'pass@n':>6s}" if sampled else ""))
    lines = [title, head, "-" * len(head)]

    def row(name: str, s: dict) -> str:
        detail = f"{s['detail']:7.3f}" if "detail" in s else f"{'-':>7s}"
        chance = f"{s['chance']:6.3f}" if "chance" in s else f"{'-':>6s}"
        fmt_acc = f"{s['formatted_accuracy']:7.3f}" if s["formatted"] else f"{'-':>7s}"
        return (f"{name:22s} {s['samples']:5d} {s['accuracy']:6.3f} {_interval(s['accuracy_interval'])} "
                f"{s['constant']['accuracy']:6.3f} {_interval(s['constant']['interval'])} {s['format_rate']:6.3f} "
                f"{fmt_acc} {chance} {s['weighted_accuracy']:6.3f} {detail}"
                + (f" {s['pass_at_n']:6.3f}" if sampled else ""))

    for key, label in (("by_type", "type"), ("by_difficulty", "difficulty")):
        for name, s in report[key].items():
            lines.append(row(f"{label} {name}", s))
    lines.append(row("overall", report["overall"]))
    lines.append("most frequent answer: " + ", ".join(f"{t} {s['top_answer'][0]!r} ({s['top_answer'][1]:.2f})"
                                                       for t, s in report["by_type"].items() if "top_answer" in s))
    answers = report["overall"]["constant"]["answers"]
    if answers:
        lines.append("const = the best constant answer of each type: "
                     + ", ".join(f"{t} {a!r}" for t, a in answers.items()))
    return "\n".join(lines)


def save_report(report: dict, path: str | Path, table: str) -> None:
    """A CLI's JSON report written to `path` (folders made), its table and where it went printed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(table)
    print(f"[waypoint] report: {path}")
