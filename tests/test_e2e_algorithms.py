"""The GRPO-CARE and COPO configs run end to end on a local Ray cluster (a few steps each) and log what each
method did. Their math is tested by hand in test_care_copo.py / test_batch_algorithms.py / test_reference.py."""
import math

from conftest import small_cfg

from cluster.controller import train
from cluster.metrics import read_jsonl

CARE_KEYS = ("care/bonus_rate", "care/bonus_mean", "care/answer_likelihood_mean", "care/consistency_rate",
             "care/ema_updates", "time/reference_s")
COPO_KEYS = ("copo/global_loss_share", "copo/gate_mean", "copo/answer_entropy_mean",
             "copo/zero_variance_with_gradient", "copo/global_adv_std")


def test_care_config(local_ray, tmp_path):
    cfg = small_cfg(tmp_path, "train.steps=3", "algorithm.care.ema_every=2", config="configs/cpu_tiny_care.yaml")
    assert cfg.algorithm.care_on and cfg.algorithm.effective_kl_coef == 0.0
    summary = train(cfg)
    assert summary["accounting"]["closes"] and summary["accounting"]["consumed"] == 3 * 2
    records = read_jsonl(summary["metrics_path"])
    assert len(records) == 3
    for r in records:
        assert all(math.isfinite(r[k]) for k in CARE_KEYS), r
        assert 0 <= r["care/bonus_rate"] <= 1 and 0 <= r["care/answer_likelihood_mean"] <= 0.95
        assert "loss/kl" not in r                         # CARE replaces the KL penalty
    # the EMA reference absorbed the policy after optimizer step 2 only, and was checkpointed
    assert [r["care/ema_updates"] for r in records] == [0, 1, 1]
    assert (tmp_path / "run" / "checkpoint" / "reference" / "ema.safetensors").is_file()


def test_copo_config(local_ray, tmp_path):
    summary = train(small_cfg(tmp_path, "train.steps=3", config="configs/cpu_tiny_copo.yaml"))
    assert summary["accounting"]["closes"] and summary["accounting"]["consumed"] == 3 * 2
    records = read_jsonl(summary["metrics_path"])
    assert len(records) == 3
    for r in records:
        assert all(math.isfinite(r[k]) for k in COPO_KEYS), r
        assert 0 <= r["copo/global_loss_share"] <= 1 and 0 <= r["copo/gate_mean"] <= 1
        assert 0 <= r["copo/answer_entropy_mean"] <= 2.0   # log2(G), G = 4
        assert abs(r["loss/ratio_mean"] - 1.0) < 1e-4      # on-policy: behaviour and learner log-probs agree
