"""The one place a task row becomes model input: chat template, tokens and (for VLMs) pixels.

Rollout engines and the learner both call `encode_prompt`, so the prompt the policy was sampled from is
exactly the prompt it is trained on, and image-placeholder counts always match the processor's output.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from data.prompts import build_messages


@dataclass
class EncodedPrompt:
    input_ids: list[int]
    mm_inputs: dict[str, np.ndarray] | None = None   # pixel_values, image_grid_thw, ...
    image: object | None = None                       # PIL image, for engines that take raw images


def load_processor(model_path: str, vision: bool):
    """The processor for vision-language checkpoints (torchvision-free where needed), else the tokenizer."""
    if vision:
        from learner.tiny_models import load_vl_processor
        return load_vl_processor(model_path)
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_path)


def tokenizer_of(processor):
    return getattr(processor, "tokenizer", processor)


def _image(row: dict):
    from PIL import Image
    fig = row.get("figure")
    if fig is None:
        raise ValueError(f"row {row.get('id')} has no figure for a vision-language model")
    return Image.open(io.BytesIO(fig)).convert("RGB")


def encode_prompt(processor, row: dict, vision: bool, include_map_text: bool = True,
                  answer_format: str = "boxed") -> EncodedPrompt:
    """Tokens (and pixels) of `row`'s prompt; answer_format ("boxed" | "tags") picks the answer instruction."""
    if not vision:
        messages = build_messages(row, modality="text", include_map_text=include_map_text,
                                  answer_format=answer_format)
        for m in messages:    # plain-string content works with every chat template (SmolLM2's included)
            if isinstance(m["content"], list):
                m["content"] = "".join(p.get("text", "") for p in m["content"])
        tok = tokenizer_of(processor)
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return EncodedPrompt(tok(text, add_special_tokens=False)["input_ids"])
    messages = build_messages(row, modality="image", include_map_text=include_map_text, answer_format=answer_format)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = _image(row)
    enc = processor(text=[text], images=[image], return_tensors="np")
    mm = {k: np.asarray(v) for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    return EncodedPrompt([int(t) for t in enc["input_ids"][0]], mm, image)


def chat_examples(tok, messages: list[dict]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) for every assistant turn of a conversation: the prompt is the chat template of
    everything before the turn with the generation prompt, the response the turn's tokens up to and including
    the template's end-of-turn, so the model learns to stop."""
    out = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = tok.apply_chat_template(messages[:k], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(messages[:k + 1], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template does not extend the prompt with the assistant turn")
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        f_ids = tok(full, add_special_tokens=False)["input_ids"]
        if f_ids[:len(p_ids)] != p_ids:      # the boundary tokenised differently: tokenise the turn alone
            f_ids = p_ids + tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
        out.append((p_ids, f_ids[len(p_ids):]))
    return out


def reference_example(processor, row: dict, vision: bool, include_map_text: bool = True,
                      answer_format: str = "boxed") -> tuple[EncodedPrompt, list[int]]:
    """A task row's prompt and its `reference_response` followed by the end-of-turn token (SFT cold start)."""
    ref = row.get("reference_response")
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"row {row.get('id')} has no reference_response")
    tok = tokenizer_of(processor)
    enc = encode_prompt(processor, row, vision, include_map_text, answer_format)
    return enc, tok(ref, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
