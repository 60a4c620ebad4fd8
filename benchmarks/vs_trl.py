"""`python -m benchmarks.vs_trl [--steps N] [--warmup K] [--json PATH] [--only trl|onpolicy|stale1] [--set k=v]`

TRL's GRPOTrainer against waypoint (on-policy and max_staleness 1) on identical work, one system after the
other, each in its own process (start-up is part of what is measured):

- the config's policy directory (resolved as the controller does, `cluster.tasks.resolve_policy`), the config's
  task rows and chat prompts (`cluster.tasks.load_task_rows`, `data.prompts.build_messages`; TRL's tokenised
  prompts are checked against waypoint's `encode_prompt` before it trains),
- G = rollout.group_size samples per prompt, train.groups_per_step prompts per step, rollout.max_new_tokens new
  tokens, rollout.temperature, no KL, the `rewards.map_vqa` score (TRL: as a reward function, in-process),
  token-mean clipped loss (TRL loss_type "dapo"), AdamW with the learner's lr / betas / weight decay / clipping.

Per system: steady-state samples/s (wall time from the end of warm-up step K to the end of the last step), the
median step split (waypoint: its metrics.jsonl; TRL: `_generate_and_score_completions` and `_calculate_rewards`
timed in a subclass, learn = step wall time - generate&score), and the time from process launch to the end of
step 0. Install TRL with `pip install -e '.[bench]'` (see pyproject.toml: it changes neither torch nor
transformers).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SYSTEMS = ("trl", "onpolicy", "stale1")
ROOT = Path(__file__).resolve().parents[1]


# ---- the shared work ---------------------------------------------------------------------------------------
def load_cfg(config: str, overrides: list[str], steps: int):
    from cluster.config import load_config
    return load_config(config, [*overrides, f"train.steps={steps}", "train.progress=false",
                                "train.eval_every=0", "algorithm.kl_coef=0.0"])


def chat_messages(row: dict, cfg) -> list[dict]:
    """The text policy's chat, as `learner.prompting.encode_prompt` renders it (content parts joined)."""
    from data.prompts import build_messages
    messages = build_messages(row, modality="text", include_map_text=cfg.data.include_map_text,
                              answer_format=cfg.data.answer_format)
    return [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
             else "".join(p.get("text", "") for p in m["content"])} for m in messages]


def work_summary(cfg, model_path: str, rows: list[dict], prompt_tokens: float) -> dict:
    r, t = cfg.rollout, cfg.train
    return {"model_path": model_path, "prompts": len(rows), "prompt_tokens_mean": round(prompt_tokens, 1),
            "group_size": r.group_size, "groups_per_step": t.groups_per_step,
            "samples_per_step": r.group_size * t.groups_per_step, "max_new_tokens": r.max_new_tokens,
            "temperature": r.temperature, "lr": cfg.learner.lr, "kl_coef": 0.0}


# ---- TRL (child process) -----------------------------------------------------------------------------------
def run_trl(cfg, steps: int, threads: int, out_path: Path, run_dir: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from cluster.launch import reward_options
    from cluster.tasks import load_task_rows, resolve_policy
    from learner.prompting import encode_prompt
    from rewards.map_vqa import score

    torch.set_num_threads(threads)
    model_path, vision, _ = resolve_policy(cfg)
    if vision:
        raise SystemExit("benchmarks.vs_trl compares text policies only")
    rows = load_task_rows(cfg, vision)
    tok = AutoTokenizer.from_pretrained(model_path)
    messages = [chat_messages(r, cfg) for r in rows]
    # the prompts TRL tokenises must be token-for-token the ones waypoint samples from
    ours = [encode_prompt(tok, r, False, cfg.data.include_map_text, cfg.data.answer_format).input_ids
            for r in rows[:32]]
    theirs = tok.apply_chat_template(messages[:32], add_generation_prompt=True, tokenize=True, return_dict=True)
    if [list(x) for x in theirs["input_ids"]] != ours:
        raise SystemExit("TRL's chat-template tokens differ from waypoint's encode_prompt: not the same work")
    prompt_tokens = statistics.mean(len(x) for x in ours)
    options = reward_options(cfg)
    timing = {"generate_score_s": [], "reward_s": [], "step_end": []}

    def map_vqa_reward(prompts, completions, row_index, **_) -> list[float]:
        t0 = time.perf_counter()
        out = [float(score(c[-1]["content"] if isinstance(c, list) else c, rows[i], **options)["total"])
               for c, i in zip(completions, row_index)]
        timing["reward_s"].append(time.perf_counter() - t0)
        return out

    class TimedGRPO(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            timing["generate_score_s"].append(time.perf_counter() - t0)
            return out

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            timing["step_end"].append(time.time())

    L, r, G = cfg.learner, cfg.rollout, cfg.rollout.group_size
    n = G * cfg.train.groups_per_step
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa")
    args = GRPOConfig(
        output_dir=str(run_dir), max_steps=steps, per_device_train_batch_size=n, gradient_accumulation_steps=1,
        num_generations=G, max_completion_length=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
        top_k=0, beta=0.0, epsilon=cfg.algorithm.clip_low, epsilon_high=cfg.algorithm.clip_high,
        loss_type="dapo", scale_rewards="group", learning_rate=L.lr, weight_decay=L.weight_decay,
        adam_beta1=L.betas[0], adam_beta2=L.betas[1], max_grad_norm=L.max_grad_norm, lr_scheduler_type="constant",
        warmup_steps=0, optim="adamw_torch",
        # TRL's GRPOConfig turns gradient checkpointing on by default; the waypoint learner follows its config
        gradient_checkpointing=L.gradient_checkpointing, use_cpu=True, bf16=False, report_to="none", save_strategy="no",
        logging_steps=10**6, log_completions=False, seed=cfg.train.seed, dataloader_num_workers=0,
        disable_tqdm=True)
    data = Dataset.from_dict({"prompt": messages, "row_index": list(range(len(rows)))})
    trainer = TimedGRPO(model=model, reward_funcs=[map_vqa_reward], args=args, train_dataset=data,
                        processing_class=tok, callbacks=[StepClock()])
    trainer.train()
    out_path.write_text(json.dumps({"timing": timing, "work": work_summary(cfg, model_path, rows, prompt_tokens),
                                    "torch_threads": threads}))


# ---- the parent: launch, collect, compare ------------------------------------------------------------------
def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return env


def launch(cmd: list[str], log: Path, timeout_s: float) -> float:
    """Run one system to completion; returns its launch time (unix seconds)."""
    t0 = time.time()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), stdout=fh, stderr=subprocess.STDOUT,
                              timeout=timeout_s)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}; log {log}:\n{tail}")
    return t0


def steady_rate(ends: list[float], warmup: int, samples_per_step: int) -> float:
    """Samples per second over the steps after warm-up step `warmup` (0-based: steps warmup .. end)."""
    if len(ends) <= warmup:
        raise ValueError(f"{len(ends)} steps finished, need more than the {warmup} warm-up steps")
    span = ends[-1] - ends[warmup - 1] if warmup > 0 else None
    if span is None:
        raise ValueError("--warmup must be >= 1 (the first step's start is not observed)")
    return samples_per_step * (len(ends) - warmup) / span


def median(xs) -> float:
    xs = list(xs)
    return float(statistics.median(xs)) if xs else 0.0


def trl_result(args, cfg, out_dir: Path) -> dict:
    out = out_dir / "trl.json"
    cmd = [sys.executable, "-m", "benchmarks.vs_trl", "--child-trl", str(out), "--steps", str(args.steps),
           "--config", args.config, "--trl-threads", str(args.trl_threads)]
    for s in args.overrides:
        cmd += ["--set", s]
    t0 = launch(cmd, out_dir / "trl.log", args.timeout_s)
    data = json.loads(out.read_text())
    tm, work = data["timing"], data["work"]
    ends = tm["step_end"]
    steady = slice(args.warmup, None)
    walls = [b - a for a, b in zip(ends[args.warmup - 1:-1], ends[args.warmup:])]
    gen_score = tm["generate_score_s"][steady]
    reward = tm["reward_s"][steady]
    return {"system": "trl", "samples_per_s": steady_rate(ends, args.warmup, work["samples_per_step"]),
            "first_step_s": ends[0] - t0, "step_s": median(walls),
            "generate_s": median(g - rw for g, rw in zip(gen_score, reward)), "reward_s": median(reward),
            "learn_s": median(w - g for w, g in zip(walls, gen_score)), "weight_sync_s": 0.0, "wait_s": None,
            "steps": len(ends), "torch_threads": data["torch_threads"], "work": work}


def waypoint_result(args, name: str, staleness: int, out_dir: Path) -> dict:
    run_dir = out_dir / name
    if (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()          # the logger appends
    cmd = [sys.executable, "-m", "cluster.train", "--config", args.config]
    for s in [*args.overrides, f"train.steps={args.steps}", f"buffer.max_staleness={staleness}",
              f"train.run_dir={run_dir}", "train.progress=false", "train.resume=false", "train.checkpoint_every=0"]:
        cmd += ["--set", s]
    t0 = launch(cmd, out_dir / f"{name}.log", args.timeout_s)
    from cluster.metrics import read_jsonl
    recs = read_jsonl(run_dir / "metrics.jsonl")
    ends = [r["unix_time"] for r in recs]
    cfg = load_cfg(args.config, args.overrides, args.steps)
    per_step = cfg.rollout.group_size * cfg.train.groups_per_step
    steady = recs[args.warmup:]
    pick = {k: median(r[f"time/{k}"] for r in steady)
            for k in ("step_s", "generate_s", "reward_s", "learn_s", "weight_sync_s", "wait_s")}
    return {"system": name, "samples_per_s": steady_rate(ends, args.warmup, per_step),
            "first_step_s": ends[0] - t0, **pick, "steps": len(recs), "max_staleness": staleness}


def median_round(results: list[dict]) -> dict:
    """One system's rounds -> the round whose samples/s is the median (the lower middle for an even count)."""
    ordered = sorted(results, key=lambda r: r["samples_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def table(results: list[dict], per_round: bool = False) -> str:
    trls = {r.get("round"): r for r in results if r["system"] == "trl"}
    head = ("system", "samples/s", "x TRL", "step s", "generate s", "reward s", "learn s", "sync s", "wait s",
            "first step s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        trl = trls.get(r.get("round")) if per_round else next(iter(trls.values()), None)
        ratio = f"{r['samples_per_s'] / trl['samples_per_s']:.2f}" if trl else "-"
        cells = [r["system"] + (f" #{r['round']}" if per_round else ""), f"{r['samples_per_s']:.1f}", ratio] + [
            "-" if r.get(k) is None else f"{r[k]:.3f}"
            for k in ("step_s", "generate_s", "reward_s", "learn_s", "weight_sync_s", "wait_s")] + [
            f"{r['first_step_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vs_trl", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/cpu_tiny.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="config override for every system (waypoint reads all; TRL the work it shares)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the steady state (>= 1)")
    ap.add_argument("--only", action="append", choices=SYSTEMS, help="run only these systems (repeatable)")
    ap.add_argument("--json", default="runs/bench_vs_trl/results.json")
    ap.add_argument("--trl-threads", type=int, default=1,
                    help="torch threads of the TRL process (default 1, as waypoint's rollout and learner actors "
                         "each run; on the shared 2-core machine 2 threads measured 2x slower)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all systems; the median round is reported")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="limit per system")
    ap.add_argument("--child-trl", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 1 <= args.warmup < args.steps:
        ap.error("need 1 <= --warmup < --steps")
    cfg = load_cfg(args.config, args.overrides, args.steps)
    if args.child_trl:
        out = Path(args.child_trl)
        run_trl(cfg, args.steps, args.trl_threads, out, out.parent / "trl_out")
        return 0
    out_dir = Path(args.json).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    rounds: list[list[dict]] = []
    for k in range(args.repeat):      # rounds, each system in turn: a load burst on a shared machine hits one round
        results = []
        for system in args.only or SYSTEMS:        # sequentially: never two systems on the CPUs at once
            print(f"[vs_trl] round {k + 1}/{args.repeat}: {system} ({args.steps} steps) ...", flush=True)
            if system == "trl":
                results.append(trl_result(args, cfg, out_dir))
            else:
                results.append(waypoint_result(args, system, 0 if system == "onpolicy" else 1, out_dir))
            results[-1]["round"] = k + 1
            print(table(results[-1:]), flush=True)
        rounds.append(results)
    summary = [median_round([r[i] for r in rounds]) for i in range(len(rounds[0]))]
    report = {"command": " ".join(["python -m benchmarks.vs_trl", *(argv if argv is not None else sys.argv[1:])]),
              "steps": args.steps, "warmup": args.warmup, "repeat": args.repeat, "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "results": summary, "rounds": rounds}
    trl = next((r for r in summary if r["system"] == "trl"), None)
    if trl:
        report["ratio_to_trl"] = {r["system"]: r["samples_per_s"] / trl["samples_per_s"] for r in summary}
    Path(args.json).write_text(json.dumps(report, indent=2))
    if args.repeat > 1:
        print("every round:\n" + table([r for rs in rounds for r in rs], per_round=True))
        print(f"per system, the round with the median samples/s (of {args.repeat}):")
    print(table(summary))
    print(f"[vs_trl] wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
