"""End to end on a local Ray cluster: vLLM rollout actors, a 2-rank DeepSpeed learner group over gloo, reward
actors, the CARE reference actor and the object-store buffer; the VLM, GRPO-CARE and COPO configs run a few
steps each. Slow-ish (engine start-up) but part of every test run. The CARE/COPO math is tested by hand in
test_care_copo.py, test_batch_algorithms.py and test_reference.py."""
import json
import math
import os

import numpy as np
import pytest
import ray
import torch
from conftest import assert_catalogued, small_cfg

from cluster.config import load_config
from cluster.launch import spawn_actors
from cluster.tasks import load_task_rows, resolve_policy

pytestmark = pytest.mark.slow      # Ray + vLLM + DeepSpeed runs: minutes

CACHE = os.environ.setdefault("WAYPOINT_CACHE", os.path.expanduser("~/.cache/waypoint"))
# care/answer_likelihood_mean is absent from a batch where no sample has an answer span (no likelihood to average)
CARE_KEYS = ("care/bonus_rate", "care/bonus_mean", "care/no_span_rate", "care/consistency_rate",
             "care/ema_updates", "time/reference_s")
COPO_KEYS = ("copo/global_loss_share", "copo/gate_mean", "copo/answer_entropy_mean",
             "copo/zero_variance_with_gradient", "copo/global_adv_std")


def hf_logprobs(model, prompt_ids, response_ids) -> np.ndarray:
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1:-1]
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(response_ids)[:, None])[:, 0].numpy()


def test_rollout_weights_follow_the_learner(local_ray, tmp_path):
    """After an optimizer step and a publish, the rollout engine serves exactly the learner's weights: through the
    object store, then through the bucketed collective broadcast (gloo here, NCCL on GPUs) from a ZeRO-3 group."""
    from actors.learner_worker import LearnerGroup
    from cluster.controller import learner_spec
    from actors.weight_sync import CollectiveTransport, ObjectStoreTransport
    from transformers import AutoModelForCausalLM

    cfg = small_cfg(tmp_path, "learner.num_workers=2", "learner.zero_stage=3", "learner.lr=1e-2")
    model_path, vision, engine = resolve_policy(cfg)
    assert engine == "vllm"
    actors = spawn_actors(cfg, model_path, vision, engine, prefix="sync/")
    try:
        learner = LearnerGroup(actors.learner_workers, learner_spec(cfg, model_path, vision), backend="gloo")
        rows = load_task_rows(cfg, vision)[:2]
        rollout = actors.rollout[0]
        groups = ray.get(list(rollout.generate.options(num_returns=2).remote(rows)))
        for g in groups:   # a reward with variance, so the step really moves the weights
            g.rewards = {"total": np.array([1.0, 0.0, 1.0, 0.0])}
            g.answers, g.reward_failures = [""] * 4, [None] * 4
        probe = (groups[0].prompt_ids, groups[0].samples[0].token_ids)
        before = ray.get(rollout.sequence_logprobs.remote(*probe))

        stats = learner.step([[ray.put(g)] for g in groups])
        assert stats["learner_version"] == 1 and math.isfinite(stats["loss/ratio_mean"])
        sync = ObjectStoreTransport().publish(learner, actors.rollout, version=1)
        assert sync["weight_bytes"] > 0 and ray.get(rollout.version.remote()) == 1
        after = ray.get(rollout.sequence_logprobs.remote(*probe))
        assert np.max(np.abs(np.subtract(after, before))) > 1e-3, "rollout weights did not change"

        # before: vLLM read the checkpoint as transformers does; after: it serves the learner's new weights
        model = AutoModelForCausalLM.from_pretrained(model_path)
        np.testing.assert_allclose(before, hf_logprobs(model, *probe), atol=2e-4)
        state = ray.get(learner.export_weights()["ref"][0])
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
        np.testing.assert_allclose(after, hf_logprobs(model, *probe), atol=2e-4)

        # step 2 goes out over the collective transport: ZeRO-3 shards gathered module by module, 64 KiB buckets,
        # received inside vLLM's worker (the worker extension that receives per tensor-parallel rank on GPUs)
        learner.step([[ray.put(g)] for g in groups])
        sync2 = CollectiveTransport(backend="gloo", bucket_mb=1 / 16, timeout_s=120).publish(
            learner, actors.rollout, version=2)
        assert sync2["weight_bytes"] == sync["weight_bytes"] and ray.get(rollout.version.remote()) == 2
        after2 = ray.get(rollout.sequence_logprobs.remote(*probe))
        assert np.max(np.abs(np.subtract(after2, after))) > 1e-3, "the broadcast did not change the weights"
        state = ray.get(learner.export_weights()["ref"][0])
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
        np.testing.assert_allclose(after2, hf_logprobs(model, *probe), atol=2e-4)

        # a run checkpoint of the 2-rank ZeRO-3 learner consolidates to exactly the weights it exported
        from cluster.evaluate import main as evaluate_main
        from cluster.export import export_policy
        learner.save(str(tmp_path / "ckpt" / "learner"))
        hf_dir = export_policy(str(tmp_path / "ckpt"), model_path, tmp_path / "hf")
        restored = AutoModelForCausalLM.from_pretrained(hf_dir).state_dict()
        for name, value in state.items():
            np.testing.assert_array_equal(restored[name].numpy(), value, err_msg=name)
        learner.shutdown()

        # `python -m cluster.evaluate` on that checkpoint and a held-out synthetic split (greedy, hf engine)
        out = tmp_path / "eval.json"
        assert evaluate_main(["--config", "configs/cpu_tiny.yaml", "--checkpoint", str(tmp_path / "ckpt"),
                              "--data", "synthetic", "--out", str(out), "--set", "rollout.engine=hf",
                              "--set", "data.n_networks=5", "--set", "data.types=[torf1, counting2]"]) == 0
        report = json.loads(out.read_text())
        assert report["meta"]["rows"] == report["overall"]["samples"] >= 20      # one greedy answer each
        assert set(report["by_type"]) == {"torf1", "counting2"}
        assert sum(s["samples"] for s in report["by_type"].values()) == report["overall"]["samples"]
        for s in [report["overall"], *report["by_type"].values(), *report["by_difficulty"].values()]:
            assert 0 <= s["accuracy"] <= s["pass_at_n"] <= 1 and 0 <= s["format_rate"] <= 1
            assert math.isfinite(s["weighted_accuracy"]) and s["failures"] == 0
    finally:
        actors.shutdown()


def test_vision_language_path_trains_on_rendered_maps(local_ray, tmp_path):
    """Tiny Qwen2-VL, hf engine, the rendered map image in the prompt: a few real RL steps."""
    from cluster.controller import train
    from cluster.metrics import read_jsonl

    cfg = load_config("configs/cpu_tiny_vlm.yaml", [
        "cluster.include_dashboard=false", "cluster.num_cpus=6", "train.progress=false",
        f"train.run_dir={tmp_path / 'vlm'}", "data.n_networks=10", "train.steps=3", "train.groups_per_step=2",
        "rollout.group_size=4", "rollout.prompts_per_call=2", "learner.micro_batch_size=4",
        "buffer.max_staleness=1"])   # off-policy: generation for step v+1 overlaps learning step v
    summary = train(cfg)
    assert summary["accounting"]["closes"]
    records = read_jsonl(summary["metrics_path"])
    assert len(records) == 3
    assert all(math.isfinite(r["loss/ratio_mean"]) and math.isfinite(r["reward/total"]) for r in records)
    assert max(r["staleness/max"] for r in records) <= 1
    # behaviour log-probs from generate match the learner's recomputation (same image, same tokens);
    # groups one version stale differ by one small optimizer step
    assert abs(records[0]["loss/ratio_mean"] - 1.0) < 1e-4
    assert all(abs(r["loss/ratio_mean"] - 1.0) < 5e-2 for r in records)


def test_train_loop_metrics_accounting_and_exact_resume(local_ray, tmp_path):
    """The loop logs every metric and its accounting closes. Stop after 2 steps and resume to 4: steps 2 and
    3 match a straight 4-step run (same samples, rewards, loss), because weights, optimizer, sampler cursor,
    sampling seeds, buffer and GRPO-CARE's EMA reference are all restored; weights travel by the collective
    transport (a gloo group re-formed by the resumed run). Runs configs/cpu_tiny_care.yaml
    (so the CARE config runs end to end here) with KL to the frozen reference kept beside CARE on purpose and
    an EMA step after every optimizer step."""
    from cluster.controller import train
    from cluster.metrics import read_jsonl
    from safetensors.numpy import load_file

    from cluster.checkpoint import latest_checkpoint

    opts = ("rollout.engine=hf",   # starts in seconds; vLLM's per-request seeds give the same guarantee
            "learner.weight_sync=collective",   # weights to rollout and the EMA reference by gloo broadcast
            "learner.weight_bucket_mb=0.25",
            "algorithm.kl_coef=0.01", "algorithm.care.ema_every=1", "algorithm.care.keep_kl=true",
            "algorithm.care.ema_decay=0.5",   # 0.5: a lost EMA state shows
            # a stage switch after step 0 and VAS scoring passes before steps 0, 1 (the switch) and 3
            "data.n_networks=5", "data.curriculum.enabled=true", "data.curriculum.after_steps=1",
            "data.curriculum.stages=[{name: one, types: [torf1]}, {name: two, types: [torf2]}]",
            "data.vas.enabled=true", "data.vas.update_every=2", "data.vas.samples=2")
    care = "configs/cpu_tiny_care.yaml"
    straight = train(small_cfg(tmp_path / "a", "train.steps=4", *opts, config=care))
    a = read_jsonl(straight["metrics_path"])
    assert straight["accounting"]["closes"] and straight["accounting"]["consumed"] == 4 * 2
    keys = ["reward/total", "reward/format", "reward/accuracy", "reward/detail", "adv/mean", "adv/std",
            "zero_variance_fraction", "staleness/mean", "throughput/tokens_per_s", "time/generate_s",
            "time/reward_s", "time/learn_s", "time/weight_sync_s", "loss/clip_fraction", "loss/kl",
            "learner_version", *CARE_KEYS]
    for r in a:
        assert all(math.isfinite(r[k]) for k in keys), r
        assert r["staleness/max"] == 0 and r["loss/kl"] >= 0
        assert 0 <= r["care/bonus_rate"] <= 1 and 0 <= r["care/no_span_rate"] <= 1
        assert ("care/answer_likelihood_mean" in r) == (r["care/no_span_rate"] < 1)
        assert 0 <= r.get("care/answer_likelihood_mean", 0) <= 1
    assert a[-1]["learner_version"] == 4 and (tmp_path / "a" / "run" / "checkpoint").is_dir()

    train(small_cfg(tmp_path / "b", "train.steps=2", *opts, config=care))
    resumed = train(small_cfg(tmp_path / "b", "train.steps=4", "train.resume=true", *opts, config=care))
    assert resumed["accounting"]["closes"] and resumed["accounting"]["consumed"] == 4 * 2
    b = read_jsonl(resumed["metrics_path"])
    assert_catalogued(a + b)
    assert [r["step"] for r in b] == [0, 1, 2, 3]          # one log across both processes
    # stage "one" (torf1) for step 0, whose record already shows the switch it caused
    assert [r["curriculum/stage"] for r in a] == [1, 1, 1, 1]
    assert [r.get("curriculum/switch", 0) for r in a] == [1, 0, 0, 0]
    # record 0 holds the initial pass and the one the switch triggers (before step 1); the period restarts there
    assert [r.get("vas/scored_prompts", 0) > 0 for r in a] == [True, False, True, False]
    for step in (2, 3):
        for key in ("reward/total", "response_tokens", "adv/std", "loss/ratio_mean", "grad_norm",
                    "care/answer_likelihood_mean", "care/no_span_rate", "curriculum/stage", "curriculum/steps_in_stage",
                    "vas/weight_min", "vas/weight_median", "vas/weight_max"):
            assert (key in b[step]) == (key in a[step]), (step, key)
            assert b[step].get(key, 0) == pytest.approx(a[step].get(key, 0), rel=1e-5, abs=1e-6), (step, key)
    assert a[-1]["care/ema_updates"] == 4 and b[-1]["care/ema_updates"] == 4
    # the EMA reference continued from its checkpoint: after 4 steps it equals the straight run's
    ema = [load_file(str(latest_checkpoint(t / "run" / "checkpoint") / "reference" / "ema.safetensors"))
           for t in (tmp_path / "a", tmp_path / "b")]
    assert ema[0].keys() == ema[1].keys()
    for name in ema[0]:
        np.testing.assert_allclose(ema[1][name], ema[0][name], rtol=0, atol=1e-6, err_msg=name)


def test_copo_config(local_ray, tmp_path):
    """configs/cpu_tiny_copo.yaml for 3 steps: COPO's metrics are logged and finite."""
    from cluster.controller import train
    from cluster.metrics import read_jsonl

    summary = train(small_cfg(tmp_path, "train.steps=3", "rollout.engine=hf", config="configs/cpu_tiny_copo.yaml"))
    assert summary["accounting"]["closes"] and summary["accounting"]["consumed"] == 3 * 2
    records = read_jsonl(summary["metrics_path"])
    assert len(records) == 3
    assert_catalogued(records)
    for r in records:
        assert all(math.isfinite(r[k]) for k in COPO_KEYS), r
        assert 0 <= r["copo/global_loss_share"] <= 1 and 0 <= r["copo/gate_mean"] <= 1
        assert 0 <= r["copo/answer_entropy_mean"] <= 2.0   # log2(G), G = 4
        assert abs(r["loss/ratio_mean"] - 1.0) < 1e-4      # on-policy: behaviour and learner log-probs agree
        assert "loss/kl" not in r and "care/bonus_rate" not in r
