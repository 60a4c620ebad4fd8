"""Step metrics: one JSONL line per step and the same numbers as Prometheus gauges on loopback.

Metric names in Prometheus are `waypoint_` + the JSONL key with `/` and `.` turned into `_`
(e.g. `reward/total` -> `waypoint_reward_total`). `METRICS` catalogues every key a run logs; the Grafana
dashboard in deploy/grafana and the end-to-end tests are checked against it.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, start_http_server


def prometheus_name(key: str) -> str:
    return "waypoint_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


# Every key the controller logs -> what it means. A key with `*`, `?` or `[` is an fnmatch pattern for a family
# whose members depend on the data (none today: `reward_failures` is one count, per-reason counts stay in the
# summary). A new logged key belongs here, or the end-to-end tests fail.
METRICS: dict[str, str] = {
    # MetricsLogger itself
    "step": "optimizer step the line belongs to (0-based)",
    "time": "seconds since the logger started (JSONL only, not a gauge)",
    "unix_time": "wall clock (unix seconds) when the line was written: start-up and step ends across processes "
                 "(JSONL only)",
    # reward components, batch means (learner/batch.py::batch_stats; actors/reward.py SCORE_KEYS, actors/prm.py)
    "reward/format": "format reward",
    "reward/accuracy": "answer accuracy (0/1, or partial credit)",
    "reward/accuracy_reward": "the accuracy term as it enters the total",
    "reward/detail": "RewardMap detail reward (planning questions)",
    "reward/weight": "question difficulty weight",
    "reward/consistent": "share of samples whose reasoning implies their answer",
    "reward/total": "total reward the advantages are computed from",
    "reward/process": "GroundedPRM: aggregated process reward",
    # batch statistics (batch_stats)
    "adv/mean": "mean advantage of the batch",
    "adv/std": "advantage standard deviation of the batch",
    "zero_variance_fraction": "share of groups whose rewards are all equal",
    "staleness/mean": "mean learner version minus generating version",
    "staleness/max": "largest learner version minus generating version",
    "response/len_mean": "mean response length (tokens)",
    "response/stop_fraction": "share of responses that ended with EOS",
    "response_tokens": "response tokens trained on this step",
    "reward_failures": "samples scored 0 for a timeout/error/bad row in this batch",
    # GRPO-CARE: batch (care_stats) and the EMA reference actor (actors/reference.py::stats)
    "care/bonus_rate": "share of samples that got the consistency bonus",
    "care/bonus_mean": "mean consistency bonus",
    "care/answer_likelihood_mean": "mean EMA-reference likelihood of the answer",
    "care/consistency_rate": "reasoning-answer consistency rate",
    "care/no_span_rate": "share of the batch's samples without an answer span (no likelihood, no bonus)",
    "care/ema_updates": "EMA reference updates done",
    "care/ema_version": "policy version the EMA reference has absorbed",
    "care/ema_approximated_updates": "EMA steps a restarted reference caught up with later weights (not exact)",
    "care/samples_scored": "samples the reference scored (cumulative)",
    "care/answer_span_missing": "samples without an answer span (cumulative)",
    # COPO: batch (copo_stats) and loss (learner/engine.py COPO_LOSS_STATS)
    "copo/answer_entropy_mean": "mean answer entropy of the groups (bits)",
    "copo/global_adv_std": "spread of the global advantages A^G",
    "copo/zero_variance_with_gradient": "share of zero-variance groups that still got gradient",
    "copo/global_loss_share": "token share of the global loss, mean (1 - w)",
    "copo/gate_mean": "mean gate w",
    # loss statistics (learner/losses.py), optimizer
    "loss/clip_fraction": "share of tokens whose ratio was clipped",
    "loss/approx_kl": "mean 0.5 (log ratio)^2 against the behaviour policy",
    "loss/ratio_mean": "mean importance ratio",
    "loss/kl": "mean k3 KL to the reference (only with kl_coef > 0)",
    "grad_norm": "global gradient norm",
    "learner/updates_per_batch": "optimizer steps per rollout batch (ppo_epochs x mini-batches)",
    "learner_version": "optimizer steps done",
    # time split and throughput (cluster/controller.py::step_record, BetweenSteps.run)
    "time/wait_s": "time waiting for a full batch",
    "time/generate_s": "summed rollout actor time of the groups delivered during the step",
    "time/reward_s": "summed reward actor time of the groups delivered during the step",
    "time/prm_s": "summed PRM actor time during the step",
    "time/reference_s": "summed EMA reference time during the step",
    "time/learn_s": "learner step time",
    "time/weight_sync_s": "weight publication time",
    "time/step_s": "wall time of the step",
    "time/schedule_s": "curriculum / VPS / evaluation work between steps",
    "time/initial_schedule_s": "the same work before step 0",
    "throughput/tokens_per_s": "response tokens trained on per second of step",
    "throughput/generated_tokens_per_s": "response tokens generated per second of step",
    # weight sync, buffer, feeder
    "weight_sync/bytes": "bytes published",
    "weight_sync/version": "weight version now served by the rollout actors",
    "buffer/size": "scored groups waiting in the buffer",
    "buffer/dropped": "groups the buffer dropped (stale), cumulative",
    "feeder/dropped": "groups the feeder dropped (stale or failed, regenerated), cumulative",
    "feeder/in_flight": "rollout/reward calls in flight",
    "faults/restarts/reward": "reward actors replaced after dying, cumulative (logged once one happened)",
    "faults/restarts/prm": "PRM actors replaced after dying, cumulative",
    "faults/rerouted/reward": "groups re-scored on a replacement reward actor, cumulative",
    "faults/rerouted/prm": "groups re-scored on a replacement PRM actor, cumulative",
    "faults/restarts/rollout": "rollout actors replaced (serving the current weights) after dying, cumulative",
    "faults/restarts/reference": "CARE reference actors replaced (checkpoint EMA + catch-up) after dying, cumulative",
    "faults/rerouted/reference": "groups parked for a dead reference and re-scored on its replacement, cumulative",
    "reward_failures_total": "samples scored 0 for a timeout/error/bad row, cumulative",
    # data schedule (data/curriculum.py::stage_metrics, data/sampling.py, cluster/schedule.py)
    "curriculum/stage": "curriculum stage index after the step",
    "curriculum/steps_in_stage": "steps spent in the current stage",
    "curriculum/switch": "1 on the step that switched stage",
    "curriculum/window_accuracy": "when_accuracy window mean",
    "vas/weight_min": "smallest VPS weight over the current pool",
    "vas/weight_median": "median VPS weight over the current pool",
    "vas/weight_max": "largest VPS weight over the current pool",
    "vas/weighted_fraction": "share of prompts drawn from the VPS-weighted part since the previous line",
    "vas/scored_prompts": "prompts scored by the VPS pass on this step",
    "vas/scoring_zero_variance_fraction": "share of scored prompts with all-equal outcomes",
    # held-out evaluation (BetweenSteps.run)
    "eval/accuracy": "held-out greedy accuracy",
    "eval/weighted_accuracy": "held-out difficulty-weighted accuracy",
    "eval/format_rate": "held-out format rate",
    "eval/detail": "held-out detail reward (planning questions)",
    "eval/constant_accuracy": "held-out accuracy of the best constant answer per question type (the bar to beat)",
    # GroundedPRM actors (actors/prm.py::ProcessScorer.stats via controller.prm_metrics)
    "prm/samples_scored": "samples the PRM scored (cumulative)",
    "prm/steps_per_sample": "reasoning steps per scored sample",
    "prm/samples_without_steps": "scored samples with no step (cumulative)",
    "prm/prm_seconds": "PRM time (cumulative)",
    "prm/verified_rate": "tool-only PRM: share of steps verified",
    "prm/refuted_rate": "tool-only PRM: share of steps refuted",
    "prm/not_checkable_rate": "tool-only PRM: share of steps not checkable",
    "prm/tool_seconds": "tool-only PRM: sandbox time (cumulative)",
    "prm/tool_timeouts": "tool-only PRM: calls killed at the time limit (cumulative)",
    "prm/tool_crashes": "tool-only PRM: calls killed at the memory limit or crashed (cumulative)",
    "prm/label_both_rate": "generative PRM: share of steps with both labels in the top k",
    "prm/label_right_only_rate": "generative PRM: share of steps with only the right label",
    "prm/label_wrong_only_rate": "generative PRM: share of steps with only the wrong label",
    "prm/label_neither_rate": "generative PRM: share of steps whose label token has no label in its top k (0.5)",
    "prm/label_no_label_rate": "generative PRM: share of steps with no label (score 0.5)",
    "prm/score_mean": "mean step score since the previous step",
    "prm/score_p10": "10th percentile step score since the previous step",
    "prm/score_p50": "median step score since the previous step",
    "prm/score_p90": "90th percentile step score since the previous step",
}

# Written to metrics.jsonl but not served as a gauge.
JSONL_ONLY = frozenset({"time", "unix_time"})

_PATTERN_CHARS = set("*?[")


def _is_pattern(key: str) -> bool:
    return bool(_PATTERN_CHARS & set(key))


def is_catalogued(key: str) -> bool:
    """True when `key` is in METRICS, exactly or through one of its fnmatch patterns."""
    if key in METRICS:
        return True
    return any(fnmatch.fnmatchcase(key, k) for k in METRICS if _is_pattern(k))


def exported_names() -> set[str]:
    """Prometheus names of every exact catalogued key the logger serves as a gauge (`step` included)."""
    return {prometheus_name(k) for k in METRICS if not _is_pattern(k) and k not in JSONL_ONLY}

def flatten(record: dict, prefix: str = "") -> dict[str, float]:
    """Nested dicts of numbers -> {"a/b": x}; non-numeric leaves are skipped."""
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


class SignalWatch:
    """Counts the steps where no group's rewards differed (zero_variance_fraction = 1, and COPO, where it runs,
    gave none of them gradient): every group-relative advantage is 0, so the reward no longer moves the policy
    (a collapsed, e.g. constant-answer, policy). Warns once after `patience` such steps in a row."""

    def __init__(self, patience: int = 20):
        self.patience, self.steps, self._run, self.warned = patience, 0, 0, False

    def update(self, step: int, record: dict) -> str | None:
        silent = (record.get("zero_variance_fraction", 0.0) >= 1.0
                  and record.get("copo/zero_variance_with_gradient", 0.0) == 0.0)
        self.steps += silent
        self._run = self._run + 1 if silent else 0
        if self._run < self.patience or self.warned:
            return None
        self.warned = True
        return (f"[waypoint] no reward signal for {self._run} steps (to step {step}): every group's samples scored "
                f"alike, so every advantage is 0 and the policy has stopped learning from the reward (collapsed?); "
                f"a higher rollout.temperature, a larger rollout.group_size or a lower learner.lr may help")


class MetricsLogger:
    def __init__(self, run_dir: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.no_signal = SignalWatch()
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self.registry = CollectorRegistry()
        self.gauges: dict[str, Gauge] = {}
        self.port = None
        self._server = None
        if port >= 0:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
            self._server = server
            self.port = server.server_port
        self.start = time.time()

    def log(self, step: int, record: dict) -> None:
        now = time.time()
        line = {"step": step, "time": round(now - self.start, 3), "unix_time": round(now, 3), **record}
        self._file.write(json.dumps(line, default=_jsonable) + "\n")
        self._file.flush()
        for key, value in flatten(record).items():
            if math.isfinite(value):
                self._gauge(key).set(value)
        self._gauge("step").set(step)
        warning = self.no_signal.update(step, record)
        if warning:
            print(warning, flush=True)

    def _gauge(self, key: str) -> Gauge:
        if key not in self.gauges:
            self.gauges[key] = Gauge(prometheus_name(key), f"waypoint metric {key}", registry=self.registry)
        return self.gauges[key]

    def close(self) -> None:
        self._file.close()
        if self._server is not None:
            self._server.shutdown()


def _jsonable(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
