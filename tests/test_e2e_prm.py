"""GroundedPRM end to end on a local Ray cluster: MCTS label building driven by rollout actors (a scripted
policy whose steps are right or wrong by construction, then the tiny policy), and a few RL steps with
tool-only process rewards and token-placed process advantages."""
import json
import math
import re
import sys

import pyarrow.parquet as pq
import pytest
import ray
from conftest import assert_catalogued, small_cfg

from actors.generation import Completion
from cluster.build_prm_data import RequestServer, run_searches, write_outputs
from rewards.prm.mcts import MCTSSettings
from rewards.prm.verify import ToolVerifier

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import tests/ modules


def corrupt(step: str) -> str:
    """The step with its last integer off by one: a refuted equation, or a wrong final answer."""
    m = list(re.finditer(r"\d+", step))[-1]
    return step[:m.start()] + str(int(m.group()) + 1) + step[m.end():]


@ray.remote
class ScriptedPolicy:
    """Writes the reference solution's next step; a sample is corrupted when (seed + j) % 3 == 2."""

    def complete(self, requests, n, temperature, max_new_tokens, stop, top_logprobs=0, seeds=None):
        out = []
        for r, seed in zip(requests, seeds):
            ref = r["row"]["reference_response"].split("\n\n")
            k = r.get("prefix", "").count("\n\n")
            group = []
            for j in range(n):
                if k >= len(ref):
                    group.append(Completion("", True, [], []))
                    continue
                step = corrupt(ref[k]) if (seed + j) % 3 == 2 else ref[k]
                group.append(Completion(step, "boxed" in step, [], []))
            out.append(group)
        return out


@ray.remote
class ScriptedJudge:
    """Says [False] about '4^3 = ...', cannot decide about '3^4 = ...', and [True] otherwise."""

    def complete(self, requests, n, temperature, max_new_tokens, stop=None, top_logprobs=0, seeds=None):
        out = []
        for r in requests:
            step = r["messages"][-1]["content"].split("New step: ")[1].split("\n")[0]
            text = ("Looks wrong. [False]" if step.startswith("4^3") else "No idea." if step.startswith("3^4")
                    else "Fine. [True]")
            out.append([Completion(text, True, [], [])])
        return out


def _check_outputs(out_dir, summary):
    table = pq.read_table(out_dir / "paths.parquet").to_pylist()
    conversations = [json.loads(line) for line in (out_dir / "conversations.jsonl").read_text().splitlines()]
    assert len(table) == len(conversations) == summary["paths"] == summary["positive"] + summary["negative"]
    for path, conv in zip(table, conversations):
        assert path["labels"] == ["+" if s > 0 else "-" for s in path["scores"]]
        # kept paths agree in sign with every step check that had evidence
        assert all(v == 0 or (v > 0) == (s > 0) for v, s in zip(path["check_values"], path["scores"]))
        assert path["polarity"] == ("positive" if path["answer_correct"] else "negative")
        roles = [m["role"] for m in conv["conversation"]]
        assert roles == ["system"] + ["user", "assistant"] * len(path["steps"])
        for message, label in zip(conv["conversation"][2::2], path["labels"]):
            text = message["content"]
            assert "<verify>" in text and "<judge>" in text and "<output>" in text
            assert ("[Right]" in text) == (label == "+") and ("\\boxed{%s}" % label) in text
    return table


def test_label_search_with_a_scripted_policy_finds_positive_and_negative_paths(local_ray, tmp_path):
    from data.math_problems import synthetic_math_problems
    cfg = small_cfg(tmp_path, "data.task=math", config="configs/cpu_tiny_prm.yaml")
    rows = synthetic_math_problems(4, seed=0)
    settings = MCTSSettings(child_nums=3, simulation_depth=4, max_rounds=6, paths_per_label=2)
    with ToolVerifier() as verifier:
        server = RequestServer(cfg, [ScriptedPolicy.remote(), ScriptedPolicy.remote()], [], verifier)
        trees = run_searches(rows, settings, server)
        summary = write_outputs(tmp_path / "labels", rows, trees, "Right", "Wrong")
    assert set(trees) == {r["id"] for r in rows}
    assert server.counts["step_verified"] > 0 and server.counts["step_refuted"] > 0
    assert server.counts["answers_correct"] > 0 and server.counts["answers_wrong"] > 0
    assert summary["positive"] > 0 and summary["negative"] > 0
    table = _check_outputs(tmp_path / "labels", summary)
    # a positive path is the reference solution itself: every step verified or answered right, all "+"
    positives = [p for p in table if p["polarity"] == "positive"]
    assert all(set(p["labels"]) == {"+"} for p in positives)
    assert any(p["steps"] == r["reference_response"].split("\n\n") for p in positives for r in rows)
    # negatives end in a "-" (truncation keeps the first wrong step and cuts what follows a recovery)
    assert all(p["labels"][-1] == "-" or "-" in p["labels"] for p in table if p["polarity"] == "negative")


def test_judge_verdicts_replace_tool_values_and_unreadable_ones_keep_them(local_ray, tmp_path):
    from data.math_problems import synthetic_math_problems
    from rewards.prm.mcts import CheckStep
    cfg = small_cfg(tmp_path, config="configs/cpu_tiny_prm.yaml")
    row = synthetic_math_problems(4, seed=0)[3]                    # 4^3 = 64, 3^4 = 81, 64 + 81 = 145
    steps = row["reference_response"].split("\n\n")
    pending = {f"p{i}": CheckStep(steps[:i], s) for i, s in enumerate(steps[:3])}
    with ToolVerifier() as verifier:
        server = RequestServer(cfg, [], [ScriptedJudge.remote()], verifier)
        answers = server.serve(pending, {pid: row for pid in pending})
    # '4^3 = 64': the tool verifies (+1), the judge says [False] -> -1 with its reason;
    # '3^4 = 81': the judge's answer is unreadable -> the tool's +1 stays; '64 + 81 = 145': [True] -> +1
    assert [answers[f"p{i}"].value for i in range(3)] == [-1, 1, 1]
    assert answers["p0"].rationale == "Looks wrong." and "64" in answers["p0"].verify
    assert server.counts["judge_false"] == 1 and server.counts["judge_true"] == 1
    assert server.counts["judge_unreadable"] == 1 and server.counts["step_verified"] == 3


def test_build_prm_data_cli_with_the_tiny_policy(local_ray, tmp_path):
    from cluster.build_prm_data import main
    out = tmp_path / "prm_data"
    args = ["--config", "configs/cpu_tiny_prm.yaml", "--set", "cluster.include_dashboard=false",
            "--set", "rollout.engine=hf",
            "--set", "prm.mcts.problems=2", "--set", "prm.mcts.max_rounds=3", "--set", "prm.mcts.child_nums=2",
            "--set", "prm.mcts.simulation_depth=2", "--set", f"prm.mcts.out_dir={out}"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["policy_calls"] > 0
    assert sum(v for k, v in summary.items() if k.startswith("stop_")) == 2
    assert summary["tool"]["timeouts"] == 0 and summary["tool"]["crashes"] == 0
    # an untrained policy never reaches the answer: whatever paths exist are negative, and all are accounted
    _check_outputs(out, summary)
    assert summary["positive"] == 0


def test_tool_only_prm_rewards_train(local_ray, tmp_path):
    from cluster.controller import train
    from cluster.metrics import read_jsonl
    summary = train(small_cfg(tmp_path, "train.steps=3", "algorithm.process.coef=0.5", "rollout.engine=hf",
                              config="configs/cpu_tiny_prm.yaml"))
    assert summary["accounting"]["closes"] and summary["accounting"]["consumed"] == 3 * 2
    records = read_jsonl(summary["metrics_path"])
    assert len(records) == 3
    assert_catalogued(records)
    for r in records:
        assert 0.0 <= r["reward/process"] <= 1.0
        for key in ("prm/steps_per_sample", "prm/verified_rate", "prm/refuted_rate", "prm/not_checkable_rate",
                    "prm/tool_seconds", "prm/tool_timeouts", "time/prm_s", "loss/ratio_mean", "grad_norm"):
            assert math.isfinite(r[key]), key
        assert r["prm/verified_rate"] + r["prm/refuted_rate"] + r["prm/not_checkable_rate"] == pytest.approx(1.0)
        assert abs(r["loss/ratio_mean"] - 1.0) < 1e-4
    assert records[-1]["prm/samples_scored"] == 3 * 2 * 4


def test_search_cli_with_a_generative_prm_on_vllm(local_ray, tmp_path):
    """cluster.search end to end: the policy's steps and the PRM's verify/judge turns (top-k log-probs) both come
    from vLLM engines; an untrained PRM writes no label, so every score is the 0.5 fallback, and it is counted."""
    from cluster.search import main
    out = tmp_path / "search.json"
    args = ["--config", "configs/cpu_tiny_prm.yaml", "--set", "cluster.include_dashboard=false",
            "--set", "rollout.engine=vllm", "--set", "prm.model=tiny-qwen2", "--set", "prm.max_new_tokens=8",
            "--set", "prm.search.problems=2", "--set", "prm.search.candidates=2", "--set", "prm.search.max_steps=2",
            "--set", "prm.search.step_max_tokens=8", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["problems"] == 2 and set(report["methods"]) == {"prm_guided", "plain_sampling"}
    for m in report["methods"].values():
        assert 0.0 <= m["accuracy"] <= 1.0 and m["scoring_failures"] == 0
    assert 1.0 <= report["methods"]["prm_guided"]["steps_mean"] <= 2.0
    stats = report["prm_stats"]
    rates = [stats[f"label_{k}_rate"] for k in ("both", "right_only", "wrong_only", "no_label")]
    assert sum(rates) == pytest.approx(1.0) and stats["samples_scored"] == 0.0   # score_next only, no groups
