"""LoRA on the policy with PEFT, and the merged view that leaves the learner.

The learner trains a `peft` model: base weights frozen, adapters A (r x in) and B (out x r) trainable, B = 0 at
the start so the policy begins exactly as the base model. Rollout engines, the EMA reference, exports and the
collective transport never see adapters: `merged_items` yields every base-model tensor under its base name with
W' = W + get_delta_weight() (PEFT's (alpha / r) B A) on adapted layers, computed on the fly without touching the
training weights (PEFT's merge_adapter/unmerge_adapter would add and subtract in place and drift).
"""
from __future__ import annotations

from typing import Iterator

import torch

from learner.config import LoRAConfig

PREFIX = "base_model.model."
ADAPTER = "default"


def apply_lora(model: torch.nn.Module, cfg: LoRAConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    present = {name.rpartition(".")[2] for name, _ in model.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        raise ValueError(f"model.lora.target_modules {missing} name no module of this model; it has e.g. "
                         f"{sorted(present - {''})[:12]}")
    peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.target_modules), bias="none")
    return get_peft_model(model, peft_cfg)


def is_lora(module: torch.nn.Module) -> bool:
    return hasattr(module, "peft_config")


def base_name(key: str) -> str | None:
    """A PEFT state-dict key -> the base model's key; None for adapter tensors."""
    if ".lora_" in key:
        return None
    key = key.removeprefix(PREFIX)
    return key.replace(".base_layer.", ".")


@torch.no_grad()
def merged_items(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(base name, tensor) of every base-model tensor, adapted layers merged, in state-dict order."""
    layers = {name: m for name, m in module.named_modules() if hasattr(m, "get_delta_weight")
              and hasattr(m, "base_layer")}
    for key, t in module.state_dict().items():
        name = base_name(key)
        if name is None:
            continue
        layer_path, _, attr = key.rpartition(".base_layer.")
        if attr == "weight" and layer_path in layers:
            t = t + layers[layer_path].get_delta_weight(ADAPTER).to(t.dtype)
        yield name, t.detach()


def adapter_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable adapter tensors, by their PEFT names (what a LoRA checkpoint holds)."""
    return {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}
