"""`python -m cluster.sft` end to end on the tiny model: chat data (as build_prm_data writes it, with a few
malformed rows) and the task rows' reference responses; the held-out loss falls, and the output directory loads
as a policy (`model.name`) and as a PRM (`prm.model`)."""
import json

import pytest
from conftest import small_cfg

pytestmark = pytest.mark.slow


def chat_rows(n: int) -> list[dict]:
    rows = []
    for k in range(n):
        a, b = k % 7, (3 * k) % 5
        rows.append({"messages": [{"role": "system", "content": "Check the step."},
                                  {"role": "user", "content": f"Step: {a} + {b} = {a + b}"},
                                  {"role": "assistant", "content": "<judge>The conclusion is [Right]</judge>"}]})
    return rows


def test_sft_on_chat_data_lowers_heldout_loss_and_loads_as_policy_and_prm(local_ray, tmp_path):
    from cluster.config import load_config
    from cluster.sft import main
    from cluster.tasks import resolve_policy
    from learner.model_zoo import resolve_model
    from transformers import AutoModelForCausalLM
    data = tmp_path / "conversations.jsonl"
    lines = [json.dumps(r) for r in chat_rows(48)] + ["not json", json.dumps({"messages": []})]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "sft"
    cfg = small_cfg(tmp_path, f"sft.path={data}", f"sft.out_dir={out}", "sft.epochs=3", "sft.batch_size=8",
                    "learner.lr=5e-3", "learner.micro_batch_size=8")
    assert main(["--config", "configs/cpu_tiny.yaml", *[a for kv in [
        "cluster.include_dashboard=false", f"sft.path={data}", f"sft.out_dir={out}", "sft.epochs=3",
        "sft.batch_size=8", "learner.lr=5e-3", "learner.micro_batch_size=8"] for a in ("--set", kv)]]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"]["skipped"] == {"not a JSON line": 1, "messages is not a non-empty list": 1}
    assert summary["examples"]["train"] + summary["examples"]["heldout"] == 48
    losses = [h["heldout_loss"] for h in summary["heldout_loss"]]
    assert losses[-1] < 0.5 * losses[0], losses
    model_dir = summary["model"]
    AutoModelForCausalLM.from_pretrained(model_dir)
    as_policy = load_config("configs/cpu_tiny.yaml", [f"model.name={model_dir}"])
    assert resolve_policy(as_policy)[0] == model_dir
    as_prm = load_config("configs/cpu_tiny_prm.yaml", [f"prm.model={model_dir}"])
    assert resolve_model(as_prm.prm.model) == model_dir
    assert cfg.sft.epochs == 3


def test_sft_cold_start_on_reference_responses(local_ray, tmp_path):
    from cluster.sft import run
    out = tmp_path / "cold"
    cfg = small_cfg(tmp_path, "sft.source=task_rows", f"sft.out_dir={out}", "sft.batch_size=8",
                    "learner.lr=5e-3", "learner.micro_batch_size=8", "sft.epochs=2", "sft.max_examples=64")
    summary = run(cfg)
    losses = [h["heldout_loss"] for h in summary["heldout_loss"]]
    assert summary["examples"]["train"] >= 48 and losses[-1] < losses[0], losses
    assert (out / "model" / "config.json").is_file() and (out / "checkpoint" / "learner" / "latest").is_file()


def test_sft_time_budget_stops_early_and_still_exports(local_ray, tmp_path):
    from cluster.sft import run
    out = tmp_path / "timed"
    cfg = small_cfg(tmp_path, "sft.source=task_rows", f"sft.out_dir={out}", "sft.batch_size=8",
                    "learner.micro_batch_size=8", "sft.epochs=1000", "sft.max_examples=32", "sft.max_minutes=0.01")
    summary = run(cfg)
    assert summary["stopped_by_time"] and 1 <= summary["steps"] < 1000 * 4
    assert (out / "model" / "config.json").is_file()
