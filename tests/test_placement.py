"""GPU cluster path on the CPU: placement plans of the GPU configs, resource checks (totals and per node), ZeRO
offload in the config and the DeepSpeed dict, the attention choice, hub model ids, the vLLM constructor's
arguments. Everything here is pure or uses fakes, except one test that reserves a CPU plan on local Ray."""
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

from cluster.config import ConfigError, load_config
from cluster.placement import (PlacementError, bundles_for, check_node_fit, check_resources, placement_plan,
                               role_summary)

ROOT = Path(__file__).resolve().parents[1]
GPU_CONFIGS = ("gpu_qwen25vl_3b_1node", "gpu_qwen25vl_7b_1node", "gpu_qwen25vl_7b_2node")


def gpu_cfg(name, *overrides):
    return load_config(ROOT / "configs" / f"{name}.yaml", list(overrides))


def node(gpu, cpu=64):
    return {"GPU": float(gpu), "CPU": float(cpu), "memory": 1e12, "node:10.0.0.1": 1.0}


# ---- the shipped GPU configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_load_with_rewardmap_defaults(name):
    cfg = gpu_cfg(name)
    assert cfg.model.name.startswith("Qwen/Qwen2.5-VL-") and cfg.model.dtype == "bfloat16"
    assert cfg.model.attn_implementation == "auto"
    assert cfg.data.images and cfg.data.source == "real" and sorted(cfg.data.types) == sorted(
        ["torf1", "torf2", "counting1", "counting2", "counting3", "planning"])
    # docs/algorithms.md#rewardmap-defaults (script values): n 4, T 1.0, 16/16 batch, lr 1e-6, wd 1e-2, KL 1e-2,
    # 2048 tokens
    assert (cfg.rollout.group_size, cfg.rollout.temperature, cfg.train.groups_per_step) == (4, 1.0, 16)
    assert (cfg.learner.lr, cfg.learner.weight_decay, cfg.learner.max_grad_norm) == (1e-6, 0.01, 1.0)
    assert (cfg.algorithm.kl_coef, cfg.algorithm.clip_low, cfg.algorithm.clip_high) == (0.01, 0.2, 0.2)
    assert cfg.rollout.max_new_tokens == 2048 and cfg.rollout.vllm.max_model_len > 2048 + 1024
    assert cfg.learner.zero_stage == 3 and cfg.learner.gradient_checkpointing
    assert cfg.buffer.max_staleness == 0 and cfg.cluster.host == "127.0.0.1"   # loopback unless --set
    seqs = cfg.train.groups_per_step * cfg.rollout.group_size
    assert seqs % cfg.learner.num_workers == 0                       # the learner splits the batch evenly
    assert cfg.rollout.num_gpus == 1 and cfg.learner.num_gpus == 1


def test_tp1_plan_3b_one_shared_group():
    cfg = gpu_cfg("gpu_qwen25vl_3b_1node")
    (shared,) = placement_plan(cfg)
    assert shared.strategy == "PACK"
    assert shared.bundles == [{"GPU": 1, "CPU": 4}] * 8
    assert shared.slots == {"rollout": [0, 1, 2, 3], "learner": [4, 5, 6, 7]}
    assert bundles_for(cfg) == shared.bundles
    assert role_summary(cfg) == ["rollout: 4 engines x 1 GPU = 4 GPU, 16 CPU", "learner: 4 x 1 GPU = 4 GPU, 16 CPU",
                                 "reward: 4 x 1 CPU = 4 CPU"]
    check_resources(cfg, {"GPU": 8, "CPU": 64}, [node(8)])


def test_tp2_plan_7b_one_node():
    cfg = gpu_cfg("gpu_qwen25vl_7b_1node")
    shared, *engines = placement_plan(cfg)
    assert shared.strategy == "PACK" and shared.bundles == [{"GPU": 1, "CPU": 4}] * 4
    assert shared.slots == {"learner": [0, 1, 2, 3]}                  # no rollout bundle in the shared group
    assert [g.name for g in engines] == ["rollout-0", "rollout-1"]
    for g in engines:
        assert g.strategy == "STRICT_PACK" and g.bundles == [{"GPU": 1, "CPU": 4}] * 2
        assert g.slots["rollout"] == [0]                              # the actor in bundle 0, worker 1 in bundle 1
    assert sum(b.get("GPU", 0) for b in bundles_for(cfg)) == 8
    assert role_summary(cfg)[0] == "rollout: 2 engines x tp 2 = 4 GPU, 16 CPU"
    check_resources(cfg, {"GPU": 8, "CPU": 64}, [node(8)])


def test_tp2_plan_7b_two_nodes():
    cfg = gpu_cfg("gpu_qwen25vl_7b_2node")
    shared, *engines = placement_plan(cfg)
    assert len(shared.bundles) == 8 and len(engines) == 4
    assert all(g.strategy == "STRICT_PACK" and len(g.bundles) == 2 for g in engines)
    nodes = [node(0, 16), node(8), node(8)]                           # a CPU-only head and two 8-GPU workers
    check_resources(cfg, {"GPU": 16, "CPU": 144}, nodes)
    with pytest.raises(PlacementError, match="asked 16 GPU, .* cluster has 8 GPU"):
        check_resources(cfg, {"GPU": 8, "CPU": 80}, [node(0, 16), node(8)])


def test_cpu_config_keeps_one_bundle_per_engine():
    cfg = load_config(ROOT / "configs/cpu_tiny.yaml")
    (shared,) = placement_plan(cfg)
    assert shared.bundles == [{"CPU": 1.0}, {"CPU": 1.0}] and shared.slots == {"rollout": [0], "learner": [1]}
    care = load_config(ROOT / "configs/cpu_tiny_care.yaml")
    assert placement_plan(care)[0].slots == {"rollout": [0], "learner": [1], "reference": [2]}


# ---- resource checks ----------------------------------------------------------------------------------------
def test_shortage_message_names_every_role_and_the_cluster():
    cfg = gpu_cfg("gpu_qwen25vl_7b_1node", "rollout.vllm.tensor_parallel_size=4")
    with pytest.raises(PlacementError) as e:
        check_resources(cfg, {"GPU": 8, "CPU": 64})
    msg = str(e.value)
    assert "GPU: asked 12, cluster has 8" in msg
    assert "rollout: 2 engines x tp 4 = 8 GPU" in msg and "learner: 4 x 1 GPU = 4 GPU" in msg
    assert "asked 12 GPU" in msg and "cluster has 8 GPU" in msg


def test_strict_pack_group_larger_than_any_node():
    """Fits the cluster's 16 GPUs in total, but one engine's 8 tensor-parallel workers need one 8-GPU node."""
    cfg = gpu_cfg("gpu_qwen25vl_7b_1node", "rollout.num_actors=1", "rollout.vllm.tensor_parallel_size=8")
    nodes = [node(4)] * 4
    with pytest.raises(PlacementError) as e:
        check_resources(cfg, {"GPU": 16, "CPU": 256}, nodes)
    msg = str(e.value)
    assert "rollout-0 needs 8 GPU" in msg and "ONE node" in msg and "largest node has 4 GPU" in msg
    check_resources(cfg, {"GPU": 16, "CPU": 128}, [node(8), node(8)])   # two 8-GPU nodes hold it


def test_strict_pack_groups_that_fit_alone_but_not_together():
    """Three tp-4 engines on two 6-GPU nodes: 12 GPUs in total, each engine fits a node, only two fit at once."""
    cfg = gpu_cfg("gpu_qwen25vl_7b_1node", "rollout.num_actors=3", "rollout.vllm.tensor_parallel_size=4",
                  "learner.num_gpus=0", "learner.num_workers=1")
    with pytest.raises(PlacementError, match="cannot all be placed, each on one node"):
        check_resources(cfg, {"GPU": 12, "CPU": 128}, [node(6), node(6)])
    check_resources(cfg, {"GPU": 12, "CPU": 192}, [node(4), node(4), node(4)])


def test_bundle_larger_than_any_node():
    cfg = gpu_cfg("gpu_qwen25vl_3b_1node", "learner.num_gpus=2")
    with pytest.raises(PlacementError, match="no node can hold a shared bundle of 2 GPU"):
        check_node_fit(placement_plan(cfg), [node(1)] * 16)


# ---- config validation --------------------------------------------------------------------------------------
def test_offload_validation():
    with pytest.raises(ConfigError, match="offload_params needs learner.zero_stage=3"):
        load_config(None, ["learner.offload_params=true"])              # default zero_stage 2
    with pytest.raises(ConfigError, match="offload_optimizer needs learner.zero_stage 1, 2 or 3"):
        load_config(None, ["learner.offload_optimizer=true", "learner.zero_stage=0"])
    cfg = load_config(None, ["learner.offload_optimizer=true", "learner.zero_stage=2"])
    assert cfg.learner.offload_optimizer and not cfg.learner.offload_params
    cfg = load_config(None, ["learner.zero_stage=3", "learner.offload_params=true", "learner.offload_optimizer=true"])
    assert cfg.learner.offload_params
    defaults = load_config(None)
    assert not defaults.learner.offload_optimizer and not defaults.learner.offload_params


def test_tensor_parallel_and_attention_validation():
    with pytest.raises(ConfigError, match="needs rollout.num_gpus=1"):
        load_config(None, ["rollout.vllm.tensor_parallel_size=2"])     # CPU: no tensor parallelism
    with pytest.raises(ConfigError, match="rollout.engine=hf"):
        load_config(None, ["rollout.vllm.tensor_parallel_size=2", "rollout.num_gpus=1", "rollout.engine=hf"])
    with pytest.raises(ConfigError, match="flash_attention_2 runs in 16-bit only"):
        load_config(None, ["model.attn_implementation=flash_attention_2"])
    assert load_config(None).model.attn_implementation == "sdpa"       # CPU default unchanged
    assert load_config(None, ["model.attn_implementation=auto"]).model.attn_implementation == "auto"


# ---- DeepSpeed config ---------------------------------------------------------------------------------------
def test_ds_config_offload_fields():
    from learner.engine import ds_config
    args = dict(micro=2, accum=4, world=1, lr=1e-6, weight_decay=0.01, betas=(0.9, 0.999), max_grad_norm=1.0)
    plain = ds_config(**args, zero_stage=3, bf16=True)
    assert plain["zero_optimization"] == {"stage": 3}
    assert plain["optimizer"]["params"]["torch_adam"] is True and plain["bf16"] == {"enabled": True}
    both = ds_config(**args, zero_stage=3, bf16=True, offload_optimizer=True, offload_params=True)
    zero = both["zero_optimization"]
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert "torch_adam" not in both["optimizer"]["params"]    # DeepSpeedCPUAdam, as the offload docs ask
    opt_only = ds_config(**args, zero_stage=2, bf16=True, offload_optimizer=True)
    assert "offload_param" not in opt_only["zero_optimization"] and "offload_optimizer" in opt_only["zero_optimization"]
    with pytest.raises(ValueError, match="stage 3"):
        ds_config(**args, zero_stage=2, bf16=True, offload_params=True)
    # DeepSpeed's own parser reads the offload sections (field names and values)
    from deepspeed.runtime.config import DeepSpeedConfig
    parsed = DeepSpeedConfig(both)
    assert parsed.zero_config.offload_optimizer.device == "cpu" and parsed.zero_config.offload_param.pin_memory
    assert parsed.zero_optimization_stage == 3


# ---- attention ----------------------------------------------------------------------------------------------
def test_resolve_attn_implementation_here():
    import torch

    from learner.model_zoo import resolve_attn_implementation
    if importlib.util.find_spec("flash_attn") is not None or torch.cuda.is_available():
        pytest.skip("this machine has flash_attn or CUDA")
    assert resolve_attn_implementation("auto") == "sdpa"
    assert resolve_attn_implementation("auto", "bfloat16") == "sdpa"
    assert resolve_attn_implementation("flash_attention_2") == "flash_attention_2"   # asked for: kept
    assert resolve_attn_implementation("eager", "float32") == "eager"


def test_resolve_attn_implementation_on_a_simulated_gpu(monkeypatch):
    import torch

    from learner.model_zoo import resolve_attn_implementation
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_attn_implementation("auto", "bfloat16") == "flash_attention_2"
    assert resolve_attn_implementation("auto", "float32") == "sdpa"        # flash-attn has no fp32 kernels
    assert resolve_attn_implementation("sdpa", "bfloat16") == "sdpa"


# ---- model names --------------------------------------------------------------------------------------------
def test_hub_id_offline_error_names_the_id(monkeypatch, tmp_path):
    from learner.model_zoo import resolve_model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError) as e:
        resolve_model("Qwen/Qwen2.5-VL-7B-Instruct")
    assert "'Qwen/Qwen2.5-VL-7B-Instruct'" in str(e.value) and "HF_HUB_OFFLINE=1" in str(e.value)


def test_hub_id_online_or_cached_is_returned_unchanged(monkeypatch, tmp_path):
    from learner.model_zoo import resolve_model
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"   # fetched by the loaders
    # offline, but in the hub cache (the layout huggingface_hub writes: refs/main -> snapshots/<commit>/)
    repo = hub / "models--Qwen--Qwen2.5-VL-3B-Instruct"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
    from learner.model_zoo import local_model_dir                     # for code that copies the files
    assert Path(local_model_dir("Qwen/Qwen2.5-VL-3B-Instruct")) == repo / "snapshots" / ("0" * 40)
    assert local_model_dir(str(tmp_path)) == str(tmp_path)


def test_local_paths_win_over_hub_ids(monkeypatch, tmp_path):
    from learner.model_zoo import is_vision_model, resolve_model
    local = tmp_path / "org" / "name"
    local.mkdir(parents=True)
    (local / "config.json").write_text('{"model_type": "qwen2_5_vl", "vision_config": {}}')
    monkeypatch.chdir(tmp_path)
    assert resolve_model("org/name") == "org/name" and is_vision_model("org/name")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "config.json").write_text('{"model_type": "qwen2"}')
    assert not is_vision_model(tmp_path / "text")
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model("no-such-model")                                  # not org/name, not a path
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model("/abs/missing/checkpoint")


# ---- actor construction (fakes instead of Ray and vLLM) ------------------------------------------------------
class _Recorder:
    def __init__(self):
        self.options, self.args, self.kwargs = {}, (), {}

    def __call__(self, **options):          # Actor.options(...)
        self.options = options
        return types.SimpleNamespace(remote=self.remote)

    def remote(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        return "actor"


def test_rollout_actor_gpu_requests(monkeypatch):
    import actors.rollout
    from cluster.launch import rollout_actor
    rec = _Recorder()
    monkeypatch.setattr(actors.rollout, "RolloutActor", types.SimpleNamespace(options=rec))
    rollout_actor(gpu_cfg("gpu_qwen25vl_7b_1node"), "m", "vllm", True, 0, {}, name="r", scheduling_strategy="S")
    assert rec.options["num_gpus"] == 0 and rec.options["num_cpus"] == 4 and rec.options["scheduling_strategy"] == "S"
    rollout_actor(gpu_cfg("gpu_qwen25vl_3b_1node"), "m", "vllm", True, 0, {}, name="r", scheduling_strategy="S")
    assert rec.options["num_gpus"] == 1                                # tp 1: the engine's own GPU


def test_prm_engine_is_never_tensor_parallel(monkeypatch):
    import actors.prm
    from cluster.launch import prm_actor
    rec = _Recorder()
    monkeypatch.setattr(actors.prm, "PRMActor", types.SimpleNamespace(options=rec))
    prm_actor(gpu_cfg("gpu_qwen25vl_7b_1node", "prm.num_gpus=1"), "m", "vllm", {}, scheduling_strategy="S")
    assert rec.kwargs["rollout_cfg"]["vllm"]["tensor_parallel_size"] == 1 and rec.options["num_gpus"] == 1


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in `vllm` module whose LLM records its keyword arguments."""
    calls = []

    class LLM:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    for var in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE"):
        monkeypatch.delenv(var, raising=False)
    return calls


def test_vllm_engine_tensor_parallel_uses_the_ray_executor(fake_vllm, monkeypatch):
    from actors.vllm_engine import VLLMEngine
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")                    # what Ray gives a num_gpus=0 actor
    VLLMEngine("m", True, dtype="bfloat16", tensor_parallel_size=2, worker_extension_cls="pkg.Ext")
    kw = fake_vllm[-1]
    assert kw["distributed_executor_backend"] == "ray" and kw["tensor_parallel_size"] == 2
    assert kw["worker_extension_cls"] == "pkg.Ext" and kw["dtype"] == "bfloat16"
    assert "enable_chunked_prefill" not in kw                          # the CPU-only workaround is off
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_vllm_engine_single_device_keeps_the_default_executor(fake_vllm):
    import torch

    from actors.vllm_engine import VLLMEngine
    VLLMEngine("m", False)
    kw = fake_vllm[-1]
    assert "distributed_executor_backend" not in kw and "worker_extension_cls" not in kw
    assert kw["tensor_parallel_size"] == 1
    if not torch.cuda.is_available():
        assert kw["enable_chunked_prefill"] is False                   # CPU build settings, as before


# ---- one real (local, CPU) Ray cluster ----------------------------------------------------------------------
def test_reserve_on_local_ray(local_ray):
    import ray
    from ray.util.placement_group import remove_placement_group

    from cluster.launch import node_resources, reserve_placement
    nodes = node_resources()
    assert len(nodes) == 1 and nodes[0]["CPU"] >= 2
    cfg = load_config(ROOT / "configs/cpu_tiny.yaml")
    shared, pg, engines = reserve_placement(cfg, prefix="test/")
    try:
        assert engines == [] and shared.slots == {"rollout": [0], "learner": [1]}
        assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 1.0}]
    finally:
        remove_placement_group(pg)
    with pytest.raises(PlacementError, match="rollout: 2 engines x tp 2 = 4 GPU"):
        reserve_placement(gpu_cfg("gpu_qwen25vl_7b_1node"))            # nothing is created on failure
    assert not [g for g in ray.util.placement_group_table().values() if g["state"] == "PENDING"]


def test_the_default_on_a_two_cpu_head_fails_at_once_naming_the_reward_actor():
    """`ray start --head --num-cpus 2` + the default config: rollout 1 + learner 1 + reward 0.25 CPU do not fit.
    The check counts the free-standing reward actors too, so this fails before anything starts instead of
    leaving the reward actor pending forever."""
    cfg = load_config(ROOT / "configs/cpu_tiny.yaml")
    with pytest.raises(PlacementError, match=r"CPU: asked 2.25, cluster has 2") as e:
        check_resources(cfg, {"CPU": 2.0}, [{"CPU": 2.0}])
    assert "reward: 1 x 0.25 CPU" in str(e.value) and "learner: 1 x 1 CPU" in str(e.value)
    check_resources(cfg, {"CPU": 3.0}, [{"CPU": 3.0}])      # fits with one more logical CPU
