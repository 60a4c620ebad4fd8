"""The GPU path (skipped without CUDA): DeepSpeed over NCCL on CUDA with the tiny config, rollout on the hf
engine, weights over the object store. Run on a lent GPU machine with `pytest -m gpu tests/test_gpu.py -s`;
it prints tokens/s, step time and weight-sync seconds for the closing note."""
import math
import os

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_tiny_config_trains_with_deepspeed_on_cuda(tmp_path):
    import ray
    from conftest import small_cfg

    from cluster.controller import train
    from cluster.metrics import read_jsonl
    os.environ.pop("DS_ACCELERATOR", None)           # conftest pins DeepSpeed to the CPU for the other tests
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    if ray.is_initialized():
        ray.shutdown()
    cfg = small_cfg(tmp_path, "train.steps=4", "learner.num_gpus=1", "learner.backend=nccl",
                    "model.dtype=bfloat16", "rollout.engine=hf")
    try:
        summary = train(cfg)
    finally:
        ray.shutdown()
    records = read_jsonl(summary["metrics_path"])
    assert summary["accounting"]["closes"] and len(records) == 4
    for r in records:
        assert math.isfinite(r["loss/ratio_mean"]) and math.isfinite(r["grad_norm"])
    last = records[-1]
    print(f"\n[gpu] step {last['time/step_s']:.2f} s, {last['throughput/tokens_per_s']:.0f} tokens/s, "
          f"weight sync {last['time/weight_sync_s']:.3f} s ({last['weight_sync/bytes'] / 1e6:.1f} MB)")
