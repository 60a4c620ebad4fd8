"""The controller: the whole RL loop in one screen. Distribution hides in the actors.

    rollout actors --groups--> reward actors --scored groups--> buffer --batch--> learner group
          ^                                                                          |
          +------------------------- new weights (version v+1) ----------------------+
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import numpy as np
import ray

from cluster.checkpoint import has_checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from cluster.config import WaypointConfig
from cluster.launch import spawn_actors, start_cluster, wait_started
from cluster.metrics import MetricsLogger
from cluster.preemption import StopRequest
from cluster.progress import progress_bar
from cluster.restarts import ConsumerRestarts
from cluster.tasks import load_task_rows, resolve_policy
from actors.learner_worker import LearnerDiedError, LearnerGroup
from learner.engine import LearnerSpec
from actors.weight_sync import TRANSPORTS
from cluster.feeder import RolloutFeeder
from cluster.eval_report import evaluation_report
from cluster.evaluate import eval_config, score_rows
from cluster.schedule import TaskSchedule


def train(cfg: WaypointConfig) -> dict:
    run_dir = Path(cfg.train.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
    t_start = time.perf_counter()
    model_path, vision, engine = resolve_policy(cfg)             # builds the tiny model on first use
    cluster = start_cluster(cfg)                                  # local Ray on loopback, or join
    # Start-up runs at once: the actors' engines and models, DeepSpeed set-up, and the data loading here
    actors = spawn_actors(cfg, model_path, vision, engine, prefix=f"{run_dir.name}-{uuid.uuid4().hex[:6]}/",
                          wait=False)
    feeder = metrics = None
    try:
        gps = cfg.train.groups_per_step
        learner = LearnerGroup(actors.learner_workers, learner_spec(cfg, model_path, vision),
                               backend=cfg.learner.backend, wait=False)
        rows = load_task_rows(cfg, vision)                            # synthetic / real / parquet questions
        transport = weight_transport(cfg)
        schedule = TaskSchedule(cfg, rows)                            # curriculum stage x VAS weights
        feeder = RolloutFeeder(schedule.sampler, actors.rollout, actors.reward, actors.buffer, gps,
                               cfg.buffer.max_staleness, total_groups=gps * cfg.train.steps,
                               prompts_per_call=cfg.rollout.prompts_per_call, seed=cfg.train.seed,
                               reference_actors=actors.reference, prm_actors=actors.prm,
                               respawn=actors.respawn, max_restarts=cfg.cluster.max_restarts,
                               revived=("rollout", "reference"))
        ckpt = run_dir / "checkpoint"
        restarts = ConsumerRestarts(feeder, learner, actors.respawn, cfg.cluster.max_restarts, ckpt)
        between = BetweenSteps(cfg, schedule, feeder, actors, vision)  # curriculum, VPS passes, evaluation
        wait_started(actors.starting + [(f"learner rank {i}", r) for i, r in enumerate(learner.setup_refs)])
        print(f"[waypoint] started in {time.perf_counter() - t_start:.1f} s", flush=True)
        metrics = MetricsLogger(run_dir, cfg.cluster.host, cfg.cluster.metrics_port)
        print(f"[waypoint] model={model_path} engine={engine} vision={vision} rows={len(rows)} ray={cluster} "
              f"metrics=http://{cfg.cluster.host}:{metrics.port}/metrics log={metrics.path}", flush=True)

        def save(step: int):
            restarts.revive(step)          # parked groups of a dead reference go back on their route first
            return save_checkpoint(ckpt, step, learner, schedule, feeder, actors.buffer, actors.reference,
                                   keep=cfg.train.keep_checkpoints)

        start = 0
        if cfg.train.resume and has_checkpoint(ckpt):                      # learner, sampler, feeder, buffer
            start = load_checkpoint(ckpt, learner, schedule, feeder, actors.buffer, actors.reference)
            transport.publish(learner, actors.weight_consumers(), version=start)  # rollout serves the saved weights
            feeder.advance(start)
            print(f"[waypoint] resumed from {ckpt} at step {start}", flush=True)
        first = between.run(start, None) if start == 0 else {}         # initial VPS estimate
        first["time/initial_schedule_s"] = first.pop("time/schedule_s", 0.0)
        feeder.start()
        last = feeder.stats()
        done, out_of_time = start, False
        deadline = time.perf_counter() + 60 * cfg.train.max_minutes if cfg.train.max_minutes else None
        with progress_bar(cfg.train.steps, enabled=cfg.train.progress) as bar, StopRequest() as stop:
            for step in range(start, cfg.train.steps):
                t0 = time.perf_counter()
                batch = take_batch(actors.buffer, feeder, gps, step, restarts)   # scored groups
                t1 = time.perf_counter()
                stats = learner_step(learner, batch, ckpt)                          # advantages, loss, updates
                t2 = time.perf_counter()
                restarts.revive(step + 1)                    # a dead rollout / reference actor gets these weights
                sync = transport.publish(learner, actors.weight_consumers(), version=step + 1)  # (+ EMA ref)
                feeder.mark_dead(sync["dead"])               # died meanwhile: replaced at the next revive
                extra = between.run(step + 1, stats.pop("groups"))      # stage switch, VPS pass, evaluation
                feeder.advance(step + 1)                                              # generate for v+1
                now = feeder.stats()
                record = step_record(stats, sync, now, last, ray.get(actors.buffer.stats.remote()),
                                     wait_s=t1 - t0, learn_s=t2 - t1, step_s=time.perf_counter() - t0,
                                     reference=alive_stats(actors.reference[:1]),
                                     prm=ray.get([a.stats.remote() for a in actors.prm]))
                record.update({**first, **extra, **schedule.metrics()})
                first, last, done = {}, now, step + 1
                metrics.log(step, record)
                bar.update(step, record)
                if stop.requested:                                             # preempted: checkpoint below
                    break
                if deadline is not None and time.perf_counter() >= deadline and done < cfg.train.steps:
                    out_of_time = True                                         # train.max_minutes: as at the end
                    break
                every = cfg.train.checkpoint_every
                if every and done % every == 0 and done < cfg.train.steps:
                    save(done)

        path = save(done)                                             # the final (or preempted) checkpoint
        print(f"[waypoint] policy in Hugging Face format: {learner.export_hf(str(path / 'hf'))}", flush=True)
        feeder.stop(drain=True)
        summary = close_accounting(feeder.stats(), ray.get(actors.buffer.stats.remote()), done * gps)
        if stop.requested:
            summary["preempted"] = {"signal": stop.name, "step": done, "checkpoint": str(path),
                                    "exit_code": stop.exit_code}
            print(f"[waypoint] {stop.name}: checkpointed step {done} of {cfg.train.steps} to {path}; continue "
                  f"with --set train.resume=true", flush=True)
        if out_of_time:
            summary["time_budget"] = {"max_minutes": cfg.train.max_minutes, "steps": done}
            print(f"[waypoint] train.max_minutes={cfg.train.max_minutes}: stopped after step {done} of "
                  f"{cfg.train.steps}; checkpoint {path}", flush=True)
        summary["steps"] = done
        summary["no_signal_steps"] = metrics.no_signal.steps       # steps where every advantage was 0
        summary["metrics_path"] = str(metrics.path)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        learner.shutdown()
        print("[waypoint] accounting: " + json.dumps(summary["accounting"]), flush=True)
        return summary
    finally:
        if feeder is not None and feeder.running:
            feeder.stop(drain=False)
        if metrics is not None:
            metrics.close()
        actors.shutdown()


class BetweenSteps:
    """What happens between optimizer steps besides weight sync: the curriculum looks at the consumed groups
    (a switch restricts sampling to the next stage), a VAS scoring pass refreshes the prompt weights every
    `update_every` steps, and a greedy held-out evaluation runs every `eval_every` steps."""

    def __init__(self, cfg: WaypointConfig, schedule: TaskSchedule, feeder: RolloutFeeder, actors, vision: bool):
        self.cfg, self.schedule, self.feeder, self.actors = cfg, schedule, feeder, actors
        self.eval_rows = []
        if cfg.train.eval_every:
            held = eval_config(cfg, "synthetic")
            small = held.data.model_copy(update={"n_networks": cfg.train.eval_networks})
            held = held.model_copy(update={"data": small})
            self.eval_rows = load_task_rows(held, vision)

    def score(self, rows: list[dict], n: int, seeds=None, temperature: float | None = None) -> list[dict]:
        t = self.cfg.rollout.temperature if temperature is None else temperature
        return score_rows(self.actors.rollout, self.actors.reward, rows, n, t, seeds=seeds,
                          with_tokens=seeds is not None)

    def run(self, version: int, consumed: list[dict] | None) -> dict:
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        event = self.schedule.observe(version - 1, consumed) if consumed is not None else None
        if event is not None:
            out["curriculum/switch"] = 1.0
            print(f"[waypoint] curriculum: step {event['step']}: {event['from']} -> {event['to']} "
                  f"({event['reason']})", flush=True)
        if self.schedule.vps_due(version):
            self.feeder.pause()                  # the scoring pass has the rollout actors to itself
            try:
                out.update(self.schedule.refresh_vps(self.score, seed=self.cfg.train.seed + version))
            finally:
                self.feeder.resume()
        every = self.cfg.train.eval_every
        if every and version > 0 and version % every == 0:
            report = evaluation_report(self.score(self.eval_rows, 1, temperature=0.0))["overall"]
            out.update({f"eval/{k}": float(v) for k, v in report.items()
                        if k in ("accuracy", "weighted_accuracy", "format_rate", "detail")})
            out["eval/constant_accuracy"] = report["constant"]["accuracy"]
        out["time/schedule_s"] = time.perf_counter() - t0
        return out


def learner_step(learner: LearnerGroup, batch: list, ckpt: Path) -> dict:
    """One learner step; a dead learner rank stops the run naming the rank and where to resume from."""
    try:
        return learner.step([entry[0] for entry in batch])
    except LearnerDiedError as e:
        last = latest_checkpoint(ckpt)
        raise RuntimeError(f"{e}. Last checkpoint: {last or 'none'}"
                           + ("; continue with --set train.resume=true" if last else "")) from e


def take_batch(buffer, feeder: RolloutFeeder, n: int, learner_version: int, restarts: ConsumerRestarts,
               poll_s: float = 5.0) -> list:
    """Block until n fresh groups are buffered; fail loudly if the feeder cannot produce them. While waiting,
    dead rollout / reference actors are replaced with the weights of `learner_version` (the learner is idle)."""
    while True:
        if feeder.error:
            raise RuntimeError(feeder.error)
        restarts.revive(learner_version)
        try:
            return ray.get(buffer.take.remote(n, learner_version, poll_s))
        except TimeoutError:   # Ray re-raises the actor's asyncio timeout as a TimeoutError subclass
            continue


def weight_transport(cfg: WaypointConfig):
    L = cfg.learner
    if L.weight_sync == "collective":
        return TRANSPORTS["collective"](backend=L.backend, bucket_mb=L.weight_bucket_mb,
                                        timeout_s=L.weight_sync_timeout_s)
    return TRANSPORTS[L.weight_sync](timeout_s=L.weight_sync_timeout_s)


def learner_spec(cfg: WaypointConfig, model_path: str, vision: bool) -> LearnerSpec:
    return LearnerSpec(model_path, vision, cfg.algorithm, cfg.learner, cfg.rollout.temperature,
                       cfg.rollout.max_new_tokens, cfg.rollout.group_size, cfg.train.groups_per_step,
                       cfg.model.dtype, cfg.model.attn_implementation, cfg.model.lora)


def step_record(stats: dict, sync: dict, now: dict, last: dict, buf: dict, wait_s: float, learn_s: float,
                step_s: float, reference: list[dict] = (), prm: list[dict] = ()) -> dict:
    delta = {k: now.get(k, 0.0) - last.get(k, 0.0)
             for k in ("generate_s", "reward_s", "prm_s", "reference_s", "response_tokens")}
    ref = {f"care/{k}": float(v) for k, v in reference[0].items()} if reference else {}
    return {
        **ref,
        **prm_metrics(prm),
        **({"time/prm_s": delta["prm_s"]} if prm else {}),
        **({"time/reference_s": delta["reference_s"]} if reference else {}),
        **stats,
        "time/wait_s": wait_s, "time/learn_s": learn_s, "time/weight_sync_s": sync["weight_sync_s"],
        "time/generate_s": delta["generate_s"], "time/reward_s": delta["reward_s"], "time/step_s": step_s,
        "throughput/tokens_per_s": stats["response_tokens"] / step_s if step_s > 0 else 0.0,
        "throughput/generated_tokens_per_s": delta["response_tokens"] / step_s if step_s > 0 else 0.0,
        "weight_sync/bytes": sync["weight_bytes"], "weight_sync/version": sync["version"],
        "buffer/size": buf["buffer_size"], "buffer/dropped": sum(buf["buffer_dropped"].values()),
        "feeder/dropped": sum(now["dropped"].values()), "feeder/in_flight": now["in_flight"],
        **{f"faults/restarts/{role}": float(n) for role, n in now["restarts"].items()},
        **{f"faults/rerouted/{role}": float(n) for role, n in now["rerouted"].items()},
        "reward_failures_total": sum(now["reward_failures"].values()),
    }


def alive_stats(pool: list) -> list[dict]:
    """stats() of each actor, leaving out one that died since (its replacement reports from the next step)."""
    out = []
    for actor in pool:
        try:
            out.append(ray.get(actor.stats.remote()))
        except ray.exceptions.RayActorError:
            pass
    return out


def prm_metrics(per_actor: list[dict]) -> dict:
    """PRM actors' stats as `prm/...`: counts and seconds summed, rates and score quantiles averaged."""
    if not per_actor:
        return {}
    summed = ("samples_scored", "samples_without_steps", "prm_seconds", "tool_seconds", "tool_timeouts",
              "tool_crashes")
    keys = {k for s in per_actor for k in s}
    return {f"prm/{k}": float(sum(s.get(k, 0.0) for s in per_actor) if k in summed
                              else np.mean([s[k] for s in per_actor if k in s])) for k in sorted(keys)}


def close_accounting(feeder: dict, buf: dict, expected: int) -> dict:
    """generated = consumed + in buffer + dropped (by reason); a mismatch is a bug, reported loudly."""
    dropped = dict(feeder["dropped"])
    for reason, n in buf["buffer_dropped"].items():
        dropped[f"buffer_{reason}"] = dropped.get(f"buffer_{reason}", 0) + n
    acct = {"generated": feeder["generated"], "consumed": buf["buffer_consumed"], "in_buffer": buf["buffer_size"],
            "dropped": dropped, "reward_failures": feeder["reward_failures"],
            "restarts": feeder["restarts"], "rerouted": feeder["rerouted"]}
    acct["closes"] = acct["generated"] == acct["consumed"] + acct["in_buffer"] + sum(dropped.values())
    if not acct["closes"]:
        print(f"[waypoint] WARNING: accounting does not close: {acct}", flush=True)
    return {"accounting": acct, "expected_consumed": expected}
