"""Trained policies leave in Hugging Face format: `save_pretrained` of the full (LoRA: merged) weights over the
base model's config, with its tokenizer / processor / generation files, so transformers and vLLM load it as is."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "*.index.json")


def save_hf_policy(state: Mapping[str, np.ndarray | torch.Tensor], base_path: str, out_dir: str | Path) -> str:
    """Write `state` (base-model names) as a model directory at `out_dir`, atomically (a temp dir renamed)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from learner.model_zoo import is_vision_model, local_model_dir
    base = local_model_dir(base_path)                   # a hub id: its cached snapshot
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns(*WEIGHT_FILES))   # tokenizer, processor, ...
    cls = AutoModelForImageTextToText if is_vision_model(base) else AutoModelForCausalLM
    model = cls.from_config(AutoConfig.from_pretrained(base), dtype=torch.float32)
    tensors = {k: v.detach().cpu() if torch.is_tensor(v) else torch.as_tensor(np.asarray(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]   # tied to the embedding
    if missing or unexpected:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"weights do not match {base}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return str(out)


def merge_lora_state(adapter_state: Mapping[str, torch.Tensor], lora: dict, base_path: str) -> dict:
    """A LoRA checkpoint's adapter tensors (PEFT names) + its LoRA config -> the merged base-model state."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from learner.config import LoRAConfig
    from learner.lora import apply_lora, merged_items
    from learner.model_zoo import is_vision_model, local_model_dir
    base = local_model_dir(base_path)
    cls = AutoModelForImageTextToText if is_vision_model(base) else AutoModelForCausalLM
    model = apply_lora(cls.from_pretrained(base, dtype=torch.float32), LoRAConfig(**lora))
    adapters = {k: v for k, v in adapter_state.items() if ".lora_" in k}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in adapters]
    if missing or not adapters:
        raise ValueError(f"the checkpoint lacks LoRA adapters of {base}: e.g. {missing[:3]}")
    model.load_state_dict(adapters, strict=False)
    return {k: v.clone() for k, v in merged_items(model)}


def write_lora_config(path: str | Path, lora) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    (Path(path) / "lora.json").write_text(json.dumps(lora.model_dump()))
