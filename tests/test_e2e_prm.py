"""GroundedPRM end to end on a local Ray cluster: MCTS label building driven by rollout actors (the scripted
policy of actors/scripted_policy.py, whose steps are right or wrong by construction, then the tiny policy), and
a few RL steps with tool-only process rewards and token-placed process advantages."""
import json
import math
import sys

import pyarrow.parquet as pq
import pytest
import ray
from conftest import assert_catalogued, small_cfg

from actors.generation import Completion
from actors.scripted_policy import ScriptedStepPolicy, corrupt
from cluster.build_prm_data import RequestServer, run_searches, write_outputs
from rewards.prm.mcts import MCTSSettings
from rewards.prm.verify import ToolVerifier

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import tests/ modules


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


def assert_multiple(x: float) -> bool:
    """x is a whole number (a count recovered from a rate or a mean)."""
    assert abs(x - round(x)) < 1e-6, x
    return True


def _check_outputs(out_dir, summary):
    table = pq.read_table(out_dir / "paths.parquet").to_pylist()
    conversations = [json.loads(line) for line in (out_dir / "conversations.jsonl").read_text().splitlines()]
    assert len(table) == len(conversations) == summary["paths"] == summary["positive"] + summary["negative"]
    for path, conv in zip(table, conversations):
        assert path["labels"] == ["+" if s > 0 else "-" for s in path["scores"]]
        # kept paths agree in sign with every step check that had evidence
        assert all(v == 0 or (v > 0) == (s > 0) for v, s in zip(path["check_values"], path["scores"]))
        assert path["polarity"] == ("positive" if path["answer_correct"] else "negative")
        roles = [m["role"] for m in conv["messages"]]
        assert roles == ["system"] + ["user", "assistant"] * len(path["steps"])
        for message, label in zip(conv["messages"][2::2], path["labels"]):
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
        server = RequestServer(cfg, [ScriptedStepPolicy.remote(), ScriptedStepPolicy.remote()], [], verifier)
        trees = run_searches(rows, settings, server)
        summary = write_outputs(tmp_path / "labels", rows, trees, "Right", "Wrong")
    assert set(trees) == {r["id"] for r in rows}
    assert server.counts["step_verified"] > 0 and server.counts["step_refuted"] > 0
    assert server.counts["answers_correct"] > 0 and server.counts["answers_wrong"] > 0
    assert summary["positive"] > 0 and summary["negative"] > 0
    table = _check_outputs(tmp_path / "labels", summary)
    assert summary["positive"] == sum(p["polarity"] == "positive" for p in table)
    reference = {r["id"]: r["reference_response"].split("\n\n") for r in rows}
    for rid in reference:    # at most paths_per_label of each polarity per problem
        assert sum(p["problem_id"] == rid and p["polarity"] == "positive" for p in table) <= 2
        assert sum(p["problem_id"] == rid and p["polarity"] == "negative" for p in table) <= 2
    for p in table:
        ref = reference[p["problem_id"]]
        # the scripted policy writes step i of the reference, right or corrupted, whatever came before it
        assert all(step in (ref[i], corrupt(ref[i])) for i, step in enumerate(p["steps"]))
        if p["polarity"] == "positive":
            # the reference solution itself: every step verified or answered right, all "+"
            assert p["steps"] == ref and p["labels"] == ["+"] * len(ref)
            continue
        # a negative path is cut at its first corrupted step k: "+" before it, "-" from it on, and it stops
        # before the next right (recovering) step, so every kept step from k on is corrupted
        k = next(i for i, step in enumerate(p["steps"]) if step != ref[i])
        assert p["labels"] == ["+"] * k + ["-"] * (len(p["steps"]) - k), p
        assert p["steps"][k:] == [corrupt(ref[i]) for i in range(k, len(p["steps"]))], p
        assert p["full_length"] >= len(p["steps"])
        if p["full_length"] > len(p["steps"]):      # what was cut starts with a right step
            assert p["scores"][-1] < 0


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


def test_build_prm_data_cli_with_the_scripted_policy_labels_both_polarities(local_ray, tmp_path):
    """prm.mcts.policy=scripted: the CLI's own route to right-and-wrong steps when the model reaches no answer."""
    from cluster.build_prm_data import main
    out = tmp_path / "scripted"
    assert main(["--config", "configs/cpu_tiny_prm.yaml", "--set", "cluster.include_dashboard=false",
                 "--set", "prm.mcts.policy=scripted", "--set", "prm.mcts.problems=3",
                 "--set", f"prm.mcts.out_dir={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "scripted" and summary["positive"] > 0 and summary["negative"] > 0
    _check_outputs(out, summary)
    from data.chat import load_conversations          # what cluster.sft reads: every path is one conversation
    conversations, skipped = load_conversations(out / "conversations.jsonl")
    assert len(conversations) == summary["paths"] and not skipped


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
        for key in ("prm/tool_seconds", "prm/tool_timeouts", "time/prm_s", "loss/ratio_mean", "grad_norm"):
            assert math.isfinite(r[key]), key
        # min over tool step scores in {0, 0.5 (neutral), 1}, and 0 for a stepless sample: each of the 8
        # samples' process rewards is a multiple of 0.5, so their batch mean is a multiple of 1/16
        assert_multiple(r["reward/process"] * 16)
        # the rates are counts over the steps scored so far (steps_per_sample x samples scored)
        steps = r["prm/steps_per_sample"] * r["prm/samples_scored"]
        assert assert_multiple(steps) and steps >= 1
        for kind in ("verified", "refuted", "not_checkable"):
            assert_multiple(r[f"prm/{kind}_rate"] * steps)
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
    # accuracy is the share of problems whose response the task's scorer marks right, rescored here
    from cluster.config import load_config
    from cluster.launch import reward_options
    from cluster.stepwise import math_policy_and_problems
    from rewards.math_answer import score
    cfg = load_config("configs/cpu_tiny_prm.yaml", [a for i, a in enumerate(args[:-2]) if args[i - 1] == "--set"])
    rows = {r["id"]: r for r in math_policy_and_problems(cfg, 2, "test")[2]}
    examples = report["examples"]
    assert [e["id"] for e in examples] == list(rows)
    for name, key in (("prm_guided", "guided"), ("plain_sampling", "plain")):
        m = report["methods"][name]
        right = [score(e[key], rows[e["id"]], **reward_options(cfg))["accuracy"] for e in examples]
        assert m["accuracy"] == pytest.approx(sum(right) / len(right)) and m["scoring_failures"] == 0
    steps_mean = report["methods"]["prm_guided"]["steps_mean"]
    assert 1.0 <= steps_mean <= 2.0
    # every kept step was chosen among 2 scored candidates: 2 x 2 problems x steps_mean PRM turns, each counted
    # under exactly one label kind
    stats = report["prm_stats"]
    turns = 2 * 2 * steps_mean
    counts = [stats[f"label_{k}_rate"] * turns for k in ("both", "right_only", "wrong_only", "neither", "no_label")]
    for c in counts:
        assert_multiple(c)
    assert sum(counts) == pytest.approx(turns) and stats["samples_scored"] == 0.0   # score_next only, no groups


def test_prm_eval_scores_labelled_steps_tool_only_separates_them_untrained_prm_is_chance(local_ray, tmp_path):
    """cluster.prm_eval on hand-labelled paths: the tool verifies '2 + 3 = 5' and refutes '2 + 3 = 6', so the
    tool-only scorer separates right from wrong steps (AUROC 1); an untrained generative PRM writes no label,
    scores every step 0.5 and so sits at chance (AUROC 0.5)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cluster.prm_eval import main
    paths = [{"problem_id": "p0", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5", "So 5 * 2 = 10"],
              "labels": ["+", "+"]},
             {"problem_id": "p0", "question": "What is 2 + 3?", "steps": ["2 + 3 = 6", "So 6 * 2 = 13"],
              "labels": ["-", "-"]},
             {"problem_id": "p1", "question": "What is 7 - 4?", "steps": ["7 - 4 = 3"], "labels": ["+"]}]
    pq.write_table(pa.Table.from_pylist(paths), tmp_path / "paths.parquet")
    out = tmp_path / "prm_eval.json"
    args = ["--config", "configs/cpu_tiny_prm.yaml", "--set", "cluster.include_dashboard=false",
            "--set", "prm.model=tiny-qwen2", "--set", "prm.max_new_tokens=8",
            "--paths", str(tmp_path / "paths.parquet"), "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    tool, generative = report["scorers"]["tool_only"], report["scorers"]["configured"]
    assert (tool["steps"], tool["positive_steps"], tool["negative_steps"]) == (5, 3, 2)
    assert tool["auroc"] == 1.0 and tool["mean_score_negative"] == 0.0 and tool["mean_score_positive"] == 1.0
    assert generative["auroc"] == 0.5 and generative["mean_score_positive"] == 0.5
    assert generative["prm_stats"]["label_no_label_rate"] + generative["prm_stats"]["label_neither_rate"] == 1.0
