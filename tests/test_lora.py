"""LoRA (PEFT) in the learner, in-process on one gloo rank: adapters start at zero (the base model's
log-probs exactly), the optimizer holds adapter state only, the merged weights a sync ships reproduce the
learner's log-probs in a plain transformers model, and a LoRA checkpoint resumes to the same next step."""
import numpy as np
import pytest
import torch

from cluster.config import ConfigError, load_config
from learner.engine import LearnerSpec, PolicyLearner
from learner.forward import response_logprobs
from learner_fixtures import init_single_rank, scored_groups
from test_learner_step import tiny  # noqa: F401  (fixture)

LORA = ["model.lora={r: 4, alpha: 8.0}", "learner.lr=1e-2", "learner.old_logprobs=recompute"]


def lora_learner(tiny, *extra):  # noqa: F811
    cfg = load_config("configs/cpu_tiny.yaml", [*LORA, *extra])
    return PolicyLearner(LearnerSpec(tiny[0], False, cfg.algorithm, cfg.learner, 1.0, 16, 4, 4,
                                     lora=cfg.model.lora)), cfg


def plain_model(path, state=None):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(path)
    if state is not None:
        m.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
    return m.eval()


def logprobs(model, groups, pad_id):
    from learner.batch import sample_rows, segments
    from learner.algorithms.base import Advantages
    rows = sample_rows(groups, Advantages(np.zeros((len(groups), groups[0].size))))
    with torch.no_grad():
        return response_logprobs(model, segments(rows), "padded", 1.0, False, pad_id)


def test_zero_adapters_give_the_base_model_and_only_adapters_are_optimised(tiny):  # noqa: F811
    init_single_rank()
    lrn, _ = lora_learner(tiny)
    batch = scored_groups(4, 4, tiny[1], seed=7)
    base = plain_model(tiny[0])
    np.testing.assert_allclose(logprobs(lrn.engine.module, batch, lrn.pad_id), logprobs(base, batch, lrn.pad_id),
                               atol=1e-6)
    lrn.train_step(batch)
    adapters = sum(p.numel() for n, p in lrn.engine.module.named_parameters() if "lora_" in n)
    trainable = sum(p.numel() for p in lrn.engine.module.parameters() if p.requires_grad)
    assert trainable == adapters > 0
    inner = getattr(lrn.engine.optimizer, "optimizer", lrn.engine.optimizer)   # ZeRO wraps torch's AdamW
    state = sum(s["exp_avg"].numel() for s in inner.state.values())              # over flat fp32 partitions
    print(f"adapters {adapters}, Adam exp_avg elements {state}")
    assert adapters <= state <= adapters + 64                                    # + DeepSpeed's alignment pad
    assert adapters < 0.2 * sum(p.numel() for p in lrn.engine.module.parameters())


def test_the_merged_weights_reproduce_the_learners_logprobs(tiny):  # noqa: F811
    init_single_rank()
    lrn, _ = lora_learner(tiny)
    batch = scored_groups(4, 4, tiny[1], seed=8)
    before = logprobs(plain_model(tiny[0]), batch, lrn.pad_id)
    lrn.train_step(batch)
    state = lrn.full_state_dict()
    assert set(state) == set(plain_model(tiny[0]).state_dict())     # base names, no adapter tensors
    synced = logprobs(plain_model(tiny[0], state), batch, lrn.pad_id)
    np.testing.assert_allclose(synced, logprobs(lrn.engine.module, batch, lrn.pad_id), atol=1e-5)
    assert np.abs(synced - before).max() > 1e-3                    # the step moved the policy


def test_a_lora_checkpoint_resumes_to_the_same_next_step(tiny, tmp_path):  # noqa: F811
    init_single_rank()
    first, second = scored_groups(4, 4, tiny[1], seed=9), scored_groups(4, 4, tiny[1], seed=10)
    a, _ = lora_learner(tiny)
    a.train_step(first)
    a.save(str(tmp_path / "learner"))
    files = sorted(p.name for p in (tmp_path / "learner" / "learner").iterdir())
    model_bytes = sum(p.stat().st_size for p in (tmp_path / "learner" / "learner").glob("*model_states.pt"))
    full_bytes = sum(v.nbytes for v in a.full_state_dict().values())
    assert model_bytes < 0.5 * full_bytes, (files, model_bytes, full_bytes)   # adapters, not the base
    want = a.train_step(second)
    b, _ = lora_learner(tiny)
    assert b.load(str(tmp_path / "learner")) == 1
    got = b.train_step(second)
    for key in ("loss/ratio_mean", "loss/clip_fraction", "grad_norm", "adv/std"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
    sa, sb = a.full_state_dict(), b.full_state_dict()
    for k in sa:
        np.testing.assert_allclose(sb[k], sa[k], atol=1e-6, err_msg=k)


def test_lora_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.lora.rank"):
        load_config("configs/cpu_tiny.yaml", ["model.lora={rank: 4}"])
    with pytest.raises(ConfigError, match="zero_stage=3"):
        load_config("configs/cpu_tiny.yaml", ["model.lora={r: 4}", "learner.zero_stage=3"])


def test_exports_load_in_plain_transformers_with_the_learners_logprobs(tiny, tmp_path):  # noqa: F811
    """The run-end export (hf/) and `cluster.export` of a LoRA checkpoint without one: both are ordinary
    Hugging Face directories (tokenizer included) whose log-probs equal the learner's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cluster.export import export_policy
    init_single_rank()
    lrn, _ = lora_learner(tiny)
    batch = scored_groups(4, 4, tiny[1], seed=12)
    lrn.train_step(batch)
    want = logprobs(lrn.engine.module, batch, lrn.pad_id)
    lrn.save(str(tmp_path / "ckpt" / "learner"))
    exported = [lrn.export_hf(str(tmp_path / "hf")),
                export_policy(tmp_path / "ckpt", tiny[0], tmp_path / "consolidated")]
    for out in exported:
        AutoTokenizer.from_pretrained(out)
        got = logprobs(AutoModelForCausalLM.from_pretrained(out).eval(), batch, lrn.pad_id)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=out)
