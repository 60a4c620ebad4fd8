"""`python -m benchmarks.learner_step [--steps N] [--zero 2 0] [--set k=v]`: where one learner step's time goes.

One process, no Ray: `learner.engine.PolicyLearner` (DeepSpeed on one gloo rank, as a LearnerWorker runs it)
trains on synthetic scored groups shaped like the config's batch (its chat prompts, G samples of
rollout.max_new_tokens random response tokens, random rewards). The step is split by timing the functions
`PolicyLearner.train_step` calls (advantages, collate + to_device, forward, loss, engine.backward, engine.step,
batch stats); a plain-torch step (forward, backward, clip, AdamW) on the same model and batch is the floor.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path


def synthetic_groups(cfg, tok, rows, n_groups: int, seed: int):
    import numpy as np

    from data.trajectory import Sample, TrajectoryGroup
    from learner.prompting import encode_prompt
    rng = np.random.default_rng(seed)
    G, R = cfg.rollout.group_size, cfg.rollout.max_new_tokens
    vocab = len(tok)
    groups = []
    for k in range(n_groups):
        row = rows[k % len(rows)]
        ids = encode_prompt(tok, row, False, cfg.data.include_map_text, cfg.data.answer_format).input_ids
        samples = [Sample([int(t) for t in rng.integers(10, vocab, R)], [-5.0] * R, "", "length", 0)
                   for _ in range(G)]
        g = TrajectoryGroup(group_id=f"g{k}", prompt_id=str(k), row={"type": row["type"]}, prompt_ids=list(ids),
                            samples=samples, version=0)
        total = rng.normal(size=G)
        g.rewards = {"total": total, "accuracy": (total > 0).astype(float)}
        groups.append(g)
    return groups


class Timers:
    def __init__(self):
        self.acc: dict[str, list[float]] = defaultdict(list)
        self.now: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.now[name] += time.perf_counter() - t0
        return timed

    def close_step(self, total: float) -> None:
        for k, v in self.now.items():
            self.acc[k].append(v)
        self.acc["step"].append(total)
        self.acc["other"].append(total - sum(self.now.values()))
        self.now = defaultdict(float)

    def medians(self) -> dict[str, float]:
        return {k: float(statistics.median(v)) for k, v in self.acc.items()}


def deepspeed_step(cfg, model_path: str, groups, zero: int, steps: int) -> dict:
    import learner.engine as E
    kw = dict(model_path=model_path, vision=False, algo={**cfg.algorithm.model_dump(), "care_on": False,
                                                          "kl_coef": 0.0, "prm_step_coef": 0.0},
              learner={**cfg.learner.model_dump(), "zero_stage": zero}, temperature=cfg.rollout.temperature,
              max_new_tokens=cfg.rollout.max_new_tokens, seqs_per_step=sum(g.size for g in groups),
              dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation)
    t0 = time.perf_counter()
    pl = E.PolicyLearner(**kw)
    build_s = time.perf_counter() - t0
    timers = Timers()
    saved = {n: getattr(E, n) for n in ("compute_advantages", "collate", "to_device", "token_logprobs",
                                        "policy_loss", "batch_stats")}
    try:
        for n, fn in saved.items():
            setattr(E, n, timers.wrap(n, fn))
        pl.engine.backward = timers.wrap("engine.backward", pl.engine.backward)
        pl.engine.step = timers.wrap("engine.step", pl.engine.step)
        pl.engine.get_global_grad_norm = timers.wrap("grad_norm", pl.engine.get_global_grad_norm)
        for i in range(steps + 2):                         # two warm-up steps
            t0 = time.perf_counter()
            pl.train_step(groups)
            total = time.perf_counter() - t0
            if i >= 2:
                timers.close_step(total)
            else:
                timers.now = defaultdict(float)
    finally:
        for n, fn in saved.items():
            setattr(E, n, fn)
    return {"system": f"deepspeed zero {zero}", "build_s": build_s, **timers.medians()}


def torch_step(cfg, model_path: str, groups, steps: int) -> dict:
    """The floor: the same forward and loss, torch backward, clip_grad_norm_ and AdamW; no DeepSpeed."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers import AutoTokenizer

    from learner.batch import collate, compute_advantages, flatten
    from learner.engine import token_logprobs
    from learner.losses import policy_loss
    L, a = cfg.learner, cfg.algorithm
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(model_path)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=L.lr, betas=L.betas, weight_decay=L.weight_decay)
    algo = {**a.model_dump(), "care_on": False, "kl_coef": 0.0}
    timers = Timers()
    for i in range(steps + 2):
        t0 = time.perf_counter()
        t = time.perf_counter()
        batch = collate(flatten(groups, compute_advantages(groups, algo)), pad)
        timers.now["collate"] += time.perf_counter() - t
        t = time.perf_counter()
        logp = token_logprobs(model, batch, cfg.rollout.temperature, False)
        loss, _ = policy_loss(logp, batch["old_logprobs"], batch["advantages"], batch["response_mask"], a.clip_low,
                              a.clip_high, a.loss_agg, max_len=cfg.rollout.max_new_tokens)
        timers.now["forward+loss"] += time.perf_counter() - t
        t = time.perf_counter()
        loss.backward()
        timers.now["backward"] += time.perf_counter() - t
        t = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), L.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        timers.now["clip+adamw"] += time.perf_counter() - t
        if i >= 2:
            timers.close_step(time.perf_counter() - t0)
        else:
            timers.now = defaultdict(float)
    return {"system": "plain torch", **timers.medians()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.learner_step", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/cpu_tiny.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--zero", type=int, nargs="+", default=[2, 0])
    ap.add_argument("--json", default="runs/bench_learner_step.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29533"), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed
    import torch
    from transformers import AutoTokenizer

    from cluster.config import load_config
    from cluster.tasks import load_task_rows, resolve_policy
    torch.set_num_threads(cfg_threads := 1)
    cfg = load_config(args.config, args.overrides)
    model_path, vision, _ = resolve_policy(cfg)
    if vision:
        raise SystemExit("text policies only")
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, rank=0, world_size=1)
    tok = AutoTokenizer.from_pretrained(model_path)
    groups = synthetic_groups(cfg, tok, load_task_rows(cfg, False), cfg.train.groups_per_step, cfg.train.seed)
    n_params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(
        model_path).parameters())
    results = [deepspeed_step(cfg, model_path, groups, z, args.steps) for z in args.zero]
    results.append(torch_step(cfg, model_path, groups, args.steps))
    seqs = sum(g.size for g in groups)
    tokens = statistics.mean(len(g.prompt_ids) + len(s.token_ids) for g in groups for s in g.samples)
    print(f"model {model_path} ({n_params / 1e6:.2f}M params), {seqs} sequences x {tokens:.0f} tokens, "
          f"micro batch {cfg.learner.micro_batch_size}, torch threads {cfg_threads}; median seconds per step")
    keys = sorted({k for r in results for k in r if k not in ("system", "step", "other")}) + ["other", "step"]
    print("| part | " + " | ".join(r["system"] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for k in keys:
        print(f"| {k} | " + " | ".join("-" if k not in r else f"{r[k]:.4f}" for r in results) + " |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"params": n_params, "sequences": seqs, "tokens_mean": tokens,
                                           "results": results}, indent=2))
    import torch.distributed as dist
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
