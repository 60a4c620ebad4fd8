"""Tiny random Qwen2-VL builder, its PIL-only processor and the training-forward helper."""
import json

import pytest
import torch
from PIL import Image

from data.corpus import tokenizer_corpus
from learner.tiny_models import (build_tiny_qwen2_vl, load_vl_processor, train_tokenizer, vision_token_ids,
                                 vl_forward_kwargs)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(tokenizer_corpus(20, 0))


@pytest.fixture(scope="module")
def model_dir(tok, tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("q2vl"), tok, seed=0)


@pytest.fixture(scope="module")
def model(model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def processor(model_dir):
    return load_vl_processor(model_dir)


@pytest.fixture(scope="module")
def batch(processor):
    image = Image.new("RGB", (224, 224), (200, 30, 30))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is Denbe on Line 3?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text, text + "Line"], images=[image, image], return_tensors="pt", padding=True)


def test_saved_files(model_dir, processor):
    cfg = json.loads((model_dir / "config.json").read_text())
    tok = processor.tokenizer
    assert cfg["model_type"] == "qwen2_vl"
    assert cfg["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg["video_token_id"] == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg["vision_start_token_id"] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg["vision_end_token_id"] == tok.convert_tokens_to_ids("<|vision_end|>")
    proc = json.loads((model_dir / "processor_config.json").read_text())
    assert proc["processor_class"] == "Qwen2VLProcessor"      # what AutoProcessor resolves with torchvision
    assert proc["image_processor"]["size"] == {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}


def test_image_token_count(batch, model, processor):
    merge = processor.image_processor.merge_size
    n_pad = (batch["input_ids"] == model.config.image_token_id).sum(dim=1)
    per_image = batch["image_grid_thw"].prod(dim=1) // merge**2
    assert n_pad.tolist() == per_image.tolist() == [64, 64]
    assert batch["mm_token_type_ids"].sum().item() == n_pad.sum().item()


def test_generate_blocks_vision_tokens(batch, model, processor):
    blocked = vision_token_ids(processor.tokenizer)
    out = model.generate(**batch, max_new_tokens=12, do_sample=True, top_k=0,
                         bad_words_ids=[[t] for t in blocked])
    new = out[:, batch["input_ids"].shape[1]:]
    assert new.shape[1] >= 1
    assert not torch.isin(new, torch.tensor(blocked)).any()


def test_training_forward_backward(batch, model):
    torch.manual_seed(0)
    prompt_len = batch["input_ids"].shape[1]
    completion = torch.randint(20, 500, (2, 6))
    input_ids = torch.cat([batch["input_ids"], completion], dim=1)
    mask = torch.cat([batch["attention_mask"], torch.ones_like(completion)], dim=1)
    labels = input_ids.clone()
    labels[:, :prompt_len] = -100
    kwargs = vl_forward_kwargs(model.config, input_ids, mask, batch["pixel_values"], batch["image_grid_thw"])
    assert torch.equal(kwargs["mm_token_type_ids"][:, :prompt_len], batch["mm_token_type_ids"])
    model.train()
    try:
        loss = model(**kwargs, labels=labels).loss
        loss.backward()
    finally:
        model.eval()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0   # the vision tower is trained too
    model.zero_grad(set_to_none=True)


def test_text_only_forward(model, processor):
    ids = processor.tokenizer(["Plan a route from Bapa to Denla."], return_tensors="pt")
    kwargs = vl_forward_kwargs(model.config, ids.input_ids, ids.attention_mask)
    assert "mm_token_type_ids" not in kwargs
    with torch.no_grad():
        logits = model(**kwargs).logits
    assert torch.isfinite(logits).all()


def test_deterministic(tok, model_dir, tmp_path):
    again = build_tiny_qwen2_vl(tmp_path / "again", tok, seed=0)
    for name in ("model.safetensors", "config.json", "processor_config.json", "tokenizer.json"):
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name
    other = build_tiny_qwen2_vl(tmp_path / "other", tok, seed=1)
    assert (other / "model.safetensors").read_bytes() != (model_dir / "model.safetensors").read_bytes()
