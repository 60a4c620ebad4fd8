"""Tiny random Qwen2 builder (learner.tiny_models.build_tiny_qwen2)."""
import json

import pytest
import torch

from data.corpus import tokenizer_corpus
from learner.tiny_models import build_tiny_qwen2, param_count, train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(tokenizer_corpus(20, 0), vocab_size=1000)


@pytest.fixture(scope="module")
def model_dir(tok, tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("q2"), tok, seed=0)


def test_config(model_dir, tok):
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["tie_word_embeddings"] is True
    assert cfg["vocab_size"] == 1024 >= len(tok)            # 1000 rounded up to a multiple of 64
    assert cfg["hidden_size"] // cfg["num_attention_heads"] >= 64
    gen = json.loads((model_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert gen["pad_token_id"] == tok.convert_tokens_to_ids("<|endoftext|>")
    assert (model_dir / "model.safetensors").is_file()
    assert 100_000 < param_count(model_dir) < 1_000_000


def test_loads_and_generates(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Is Denbe on Line 3?"}],
                                     add_generation_prompt=True, tokenize=False)
    enc = tok([prompt, prompt + "Line"], return_tensors="pt", padding=True)
    assert tok.padding_side == "left"
    out = model.generate(**enc, max_new_tokens=8, do_sample=True, top_k=0)
    assert out.shape[0] == 2 and 1 <= out.shape[1] - enc.input_ids.shape[1] <= 8
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_same_seed_same_bytes(tok, model_dir, tmp_path):
    again = build_tiny_qwen2(tmp_path / "again", tok, seed=0)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json"):
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name


def test_other_seed_other_weights(tok, model_dir, tmp_path):
    other = build_tiny_qwen2(tmp_path / "other", tok, seed=1)
    assert (other / "model.safetensors").read_bytes() != (model_dir / "model.safetensors").read_bytes()


def test_rejects_small_head_dim(tok, tmp_path):
    with pytest.raises(ValueError, match="head_dim"):
        build_tiny_qwen2(tmp_path, tok, hidden_size=64, num_heads=2)
