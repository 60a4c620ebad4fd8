"""`python -m cluster.sft --config X [--set sft.path=conversations.jsonl ...]`: supervised fine-tuning.

The same learner as RL (DeepSpeed engine, shared-prefix forward, checkpoints, LoRA, export), with the `sft`
algorithm: the negative log-likelihood of assistant tokens only. Two sources:
  - `sft.source: chat`: chat JSONL/parquet (`messages`), e.g. GroundedPRM's `conversations.jsonl` -> a
    generative PRM (use the output as `prm.model`);
  - `sft.source: task_rows`: the config's task rows with their `reference_response` -> a cold-started policy
    (RewardMap's SFT baseline, MMR1's cold start; use the output as `model.name`).
A held-out split (`sft.eval_fraction`) is scored before, during (`sft.eval_every`) and after training. Output in
`sft.out_dir`: metrics.jsonl, summary.json, checkpoint/ and model/ (Hugging Face format).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cluster.config import WaypointConfig, add_config_args, config_from_args


def sft_examples(cfg: WaypointConfig, model_path: str, vision: bool) -> tuple[list, dict]:
    """TrajectoryGroups of one response each (the assistant turn or the reference), and skip counts."""
    from data.trajectory import Sample, TrajectoryGroup
    from learner.prompting import chat_examples, load_processor, reference_example, tokenizer_of
    processor = load_processor(model_path, vision)
    skipped: dict[str, int] = {}
    pairs = []          # (prompt ids, mm inputs, response ids)
    if cfg.sft.source == "chat":
        from data.chat import load_conversations
        conversations, bad = load_conversations(cfg.sft.path)
        skipped.update(bad)
        for messages in conversations:
            pairs += [(p, None, r) for p, r in chat_examples(tokenizer_of(processor), messages)]
    else:
        from cluster.tasks import load_task_rows
        for row in load_task_rows(cfg, vision):
            try:
                enc, resp = reference_example(processor, row, vision, cfg.data.include_map_text,
                                              cfg.data.answer_format)
            except ValueError:
                skipped["no reference_response"] = skipped.get("no reference_response", 0) + 1
                continue
            pairs.append((enc.input_ids, enc.mm_inputs, resp))
    if cfg.sft.max_examples:
        pairs = pairs[:cfg.sft.max_examples]
    groups = []
    for k, (prompt, mm, resp) in enumerate(pairs):
        g = TrajectoryGroup(f"sft-{k}", f"sft-{k}", {}, list(prompt), [Sample(list(resp), [0.0] * len(resp), "",
                                                                             "stop", 0)], 0, mm_inputs=mm)
        g.rewards = {"total": np.zeros(1)}
        groups.append(g)
    return groups, skipped


def run(cfg: WaypointConfig) -> dict:
    import ray

    from actors.learner_worker import LearnerGroup, LearnerWorker
    from cluster.launch import start_cluster, worker_env
    from cluster.tasks import resolve_policy
    from learner.algorithms.config import AlgorithmConfig
    from learner.engine import LearnerSpec
    s, L = cfg.sft, cfg.learner
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.model_dump_json(indent=2))
    model_path, vision, _ = resolve_policy(cfg)
    examples, skipped = sft_examples(cfg, model_path, vision)
    rng = np.random.default_rng(cfg.train.seed)
    order = rng.permutation(len(examples))
    n_eval = max(1, int(round(s.eval_fraction * len(examples))))
    held, train = [examples[i] for i in order[:n_eval]], [examples[i] for i in order[n_eval:]]
    if len(train) < s.batch_size:
        raise ValueError(f"{len(train)} training examples (after {n_eval} held out) < sft.batch_size "
                         f"{s.batch_size}; skipped: {skipped}")
    start_cluster(cfg)
    env = {"env_vars": worker_env(L.num_gpus > 0)}
    workers = [LearnerWorker.options(num_cpus=L.num_cpus, num_gpus=L.num_gpus, runtime_env=env).remote(
        i, L.num_workers) for i in range(L.num_workers)]
    spec = LearnerSpec(model_path, vision, AlgorithmConfig(advantage="sft"), L, 1.0, cfg.rollout.max_new_tokens,
                       1, s.batch_size, cfg.model.dtype, cfg.model.attn_implementation, cfg.model.lora)
    learner = LearnerGroup(workers, spec, backend=L.backend)
    held_refs = [[ray.put(g)] for g in held]
    steps_per_epoch = -(-len(train) // s.batch_size)
    wrapped = steps_per_epoch * s.batch_size - len(train)    # the last batch of an epoch is topped up, counted
    history = [{"step": 0, "heldout_loss": learner.eval_loss(held_refs)["loss"]}]
    print(f"[waypoint] sft: {len(train)} train / {len(held)} held-out examples, held-out loss "
          f"{history[0]['heldout_loss']:.4f}", flush=True)
    step, t0 = 0, time.perf_counter()
    deadline = t0 + 60 * s.max_minutes if s.max_minutes else None
    out_of_time = False
    with open(out / "metrics.jsonl", "w") as log:
        for epoch in range(s.epochs):
            perm = rng.permutation(len(train))
            perm = np.concatenate([perm, perm[:wrapped]])
            for b in range(steps_per_epoch):
                out_of_time = deadline is not None and time.perf_counter() >= deadline
                if out_of_time:                        # sft.max_minutes: stop here, save and export as at the end
                    break
                batch = [[ray.put(train[i])] for i in perm[b * s.batch_size:(b + 1) * s.batch_size]]
                stats = learner.step(batch)
                step += 1
                record = {"step": step, "epoch": epoch, "train_loss": stats["loss/nll"],
                          "grad_norm": stats["grad_norm"], "time_s": time.perf_counter() - t0}
                if s.eval_every and step % s.eval_every == 0:
                    record["heldout_loss"] = learner.eval_loss(held_refs)["loss"]
                    history.append({"step": step, "heldout_loss": record["heldout_loss"]})
                log.write(json.dumps(record) + "\n")
            if out_of_time:
                break
    if history[-1]["step"] != step:
        history.append({"step": step, "heldout_loss": learner.eval_loss(held_refs)["loss"]})
    learner.save(str(out / "checkpoint" / "learner"))
    model_dir = learner.export_hf(str(out / "model"))
    learner.shutdown()
    for w in workers:
        ray.kill(w)
    summary = {"examples": {"train": len(train), "heldout": len(held), "skipped": skipped,
                            "topped_up_per_epoch": wrapped},
               "steps": step, "epochs_run": round(step / steps_per_epoch, 3), "stopped_by_time": out_of_time,
               "heldout_loss": history, "model": model_dir, "seconds": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[waypoint] sft: held-out loss {history[0]['heldout_loss']:.4f} -> {history[-1]['heldout_loss']:.4f}; "
          f"model: {model_dir}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.sft", description=__doc__.splitlines()[0])
    add_config_args(ap)
    cfg = config_from_args(ap.parse_args(argv))
    if cfg is None:
        return 2
    if cfg.sft is None:
        print("config error: no sft section (set sft.path=... or sft.source=task_rows)", file=sys.stderr)
        return 2
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as e:
        print(f"sft error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
