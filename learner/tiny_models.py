"""Tiny random Qwen2 / Qwen2-VL models with a home-trained BPE tokenizer.

No model hub is reachable, so tests and local runs use models built here: a byte-level
BPE trained on the task corpus plus randomly initialised Qwen2 / Qwen2-VL weights.
Everything is deterministic for a given corpus and seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, "<|im_start|>", EOS_TOKEN, VISION_START, VISION_END, IMAGE_TOKEN, VIDEO_TOKEN]
VISION_TOKENS = [VISION_START, VISION_END, IMAGE_TOKEN, VIDEO_TOKEN]

# Qwen2's pre-tokenizer split: a letter run keeps one leading symbol ("\boxed", "{yes"),
# digits are single pre-tokens, so `\boxed{yes}` needs only ~3 tokens after BPE.
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen-style ChatML. Content is a string or a list of parts; each image/video part becomes
# one placeholder that the processor later expands to the right number of pad tokens.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Closed-set answers as whole tokens. A randomly initialised policy finds the answer format only by
# sampling it: with `\boxed{yes}` as one token of ~1000 it shows up in a few percent of 16-token samples,
# as three tokens almost never. Real tokenizers need no such help (pretraining taught the format).
ANSWER_TOKENS = ([r"\boxed{yes}", r"\boxed{no}"] + [rf"\boxed{{{c}}}" for c in "ABCD"]
                 + [rf"\boxed{{{n}}}" for n in range(13)])
# The R1 answer-format tags (GRPO-CARE), whole tokens for the same reason. Only the tags: the content between
# them stays ordinary BPE, so `<answer>yes</answer>` is <answer>, yes, </answer> and the answer span is exact.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# Small images keep the number of vision tokens (and CPU time) low: 56x56 -> 4 tokens,
# 224x224 -> 64 tokens after the 2x2 merge.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 224 * 224


def train_tokenizer(corpus: list[str], vocab_size: int = 1024, seed: int = 0,
                    answer_tokens: bool = True) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with Qwen special tokens and chat template.

    BPE training is deterministic for a given corpus; `seed` is accepted for API symmetry
    with the model builders and does not change the result. `answer_tokens` adds ANSWER_TOKENS and TAG_TOKENS
    as ordinary (non-special) whole tokens, so they decode to their text like any other token.
    """
    del seed
    tok = Tokenizer(models.BPE())
    # AutoTokenizer reloads a saved Qwen2 tokenizer as `Qwen2Tokenizer`, which applies NFC;
    # training with the same normaliser keeps in-memory and reloaded encodings identical.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    added = ANSWER_TOKENS + TAG_TOKENS if answer_tokens else []
    trainer = trainers.BpeTrainer(
        # the added tokens count towards vocab_size, so the total stays a multiple of 64
        vocab_size=vocab_size - len(added),
        special_tokens=SPECIAL_TOKENS,
        # All 256 byte symbols, so any text (unseen characters included) round-trips.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    if added:
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in added])
    return _wrap_tokenizer(tok)


def _wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a raw `tokenizers` object as a transformers tokenizer with chat template."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (EOS_TOKEN, PAD_TOKEN)],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=2048,
    )


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the vision special tokens; block them during generation."""
    return [tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]


def padded_vocab_size(tokenizer, multiple: int = 64) -> int:
    """len(tokenizer) rounded up to a multiple (friendlier matmul shapes)."""
    return -(-len(tokenizer) // multiple) * multiple


def _special_ids(tokenizer) -> dict[str, int]:
    return {
        "eos_token_id": tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        "pad_token_id": tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        "bos_token_id": tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    }


def _generation_config(tokenizer) -> GenerationConfig:
    ids = _special_ids(tokenizer)
    return GenerationConfig(eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"],
                            bos_token_id=ids["bos_token_id"])


def _text_config_kwargs(tokenizer, hidden_size, num_layers, num_heads, num_kv_heads,
                        intermediate_size, max_position_embeddings) -> dict:
    """Shared decoder hyper-parameters for the text and vision-language builders."""
    if hidden_size // num_heads < 64:
        # vLLM's CPU attention backend rejects head sizes below 64.
        raise ValueError(f"head_dim = {hidden_size}/{num_heads} must be >= 64 for vLLM CPU")
    return dict(
        vocab_size=padded_vocab_size(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )


def build_tiny_qwen2(out_dir, tokenizer, seed: int = 0, hidden_size: int = 128, num_layers: int = 2,
                     num_heads: int = 2, num_kv_heads: int = 2, intermediate_size: int = 384,
                     max_position_embeddings: int = 2048) -> Path:
    """Build and save a random-initialised tiny Qwen2ForCausalLM plus tokenizer."""
    config = Qwen2Config(**_text_config_kwargs(tokenizer, hidden_size, num_layers, num_heads, num_kv_heads,
                                               intermediate_size, max_position_embeddings))
    model = _init_model(Qwen2ForCausalLM, config, seed)
    model.generation_config = _generation_config(tokenizer)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _init_model(cls, config, seed: int):
    """Instantiate `cls(config)` under a fixed seed, in fp32, eval mode."""
    torch.manual_seed(seed)
    model = cls(config).to(torch.float32)
    model.eval()
    return model


def _vision_config(hidden_size, vision_depth, vision_embed_dim, vision_heads) -> dict:
    return dict(
        depth=vision_depth,
        embed_dim=vision_embed_dim,
        hidden_size=hidden_size,  # merger output = text hidden size
        num_heads=vision_heads,
        mlp_ratio=2,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        in_channels=3,
    )


def build_tiny_qwen2_vl(out_dir, tokenizer, seed: int = 0, hidden_size: int = 128, num_layers: int = 2,
                        num_heads: int = 2, num_kv_heads: int = 2, intermediate_size: int = 384,
                        max_position_embeddings: int = 2048, vision_depth: int = 1, vision_embed_dim: int = 64,
                        vision_heads: int = 2, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> Path:
    """Build and save a random tiny Qwen2VLForConditionalGeneration plus processor."""
    text = _text_config_kwargs(tokenizer, hidden_size, num_layers, num_heads, num_kv_heads,
                               intermediate_size, max_position_embeddings)
    head_dim = hidden_size // num_heads
    if head_dim % 16:
        raise ValueError(f"head_dim {head_dim} must be a multiple of 16 for the M-RoPE split")
    # M-RoPE splits head_dim/2 rotary frequencies over (t, h, w); Qwen uses a 2:3:3 split.
    quarter = head_dim // 2 // 8
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6,
                               "mrope_section": [2 * quarter, 3 * quarter, 3 * quarter]}
    tid = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=_vision_config(hidden_size, vision_depth, vision_embed_dim, vision_heads),
        image_token_id=tid(IMAGE_TOKEN),
        video_token_id=tid(VIDEO_TOKEN),
        vision_start_token_id=tid(VISION_START),
        vision_end_token_id=tid(VISION_END),
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )
    model = _init_model(Qwen2VLForConditionalGeneration, config, seed)
    model.generation_config = _generation_config(tokenizer)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    make_vl_processor(tokenizer, min_pixels, max_pixels).save_pretrained(out)
    return out


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2VLProcessor without a video processor.

    transformers' video processors need torchvision (absent on the CPU machines) and
    ProcessorMixin refuses `video_processor=None`; dropping the argument from `__init__`
    removes it from the processor's attribute list. Images and text work as usual.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                         chat_template=chat_template, **kwargs)

    def save_pretrained(self, save_directory, **kwargs):
        """Save as a plain Qwen2VLProcessor, so torchvision setups load it with AutoProcessor."""
        files = super().save_pretrained(save_directory, **kwargs)
        out = Path(save_directory)
        proc = json.loads((out / "processor_config.json").read_text())
        proc["processor_class"] = "Qwen2VLProcessor"
        # Same resize/patch settings for videos (AutoVideoProcessor reads this nested entry).
        video = dict(proc["image_processor"], video_processor_type="Qwen2VLVideoProcessor")
        video.pop("image_processor_type", None)
        proc["video_processor"] = video
        _write_json(out / "processor_config.json", proc)
        tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
        tok_cfg["processor_class"] = "Qwen2VLProcessor"
        _write_json(out / "tokenizer_config.json", tok_cfg)
        return files


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def make_vl_processor(tokenizer, min_pixels: int = MIN_PIXELS,
                      max_pixels: int = MAX_PIXELS) -> ImageOnlyQwen2VLProcessor:
    """A Qwen2-VL processor on the PIL image processor (no torchvision needed)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels,
                                               patch_size=14, merge_size=2, temporal_patch_size=2)
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     chat_template=CHAT_TEMPLATE)


def load_vl_processor(path):
    """Load a saved Qwen2-VL processor: AutoProcessor with torchvision, image-only without."""
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)
    return ImageOnlyQwen2VLProcessor.from_pretrained(path)


def mm_token_type_ids(input_ids: torch.Tensor, image_token_id: int, video_token_id: int) -> torch.Tensor:
    """Modality of each token (0 text, 1 image, 2 video), as Qwen2-VL's M-RoPE expects."""
    types = torch.zeros_like(input_ids)  # same dtype as the processor returns (int64)
    types[input_ids == image_token_id] = 1
    types[input_ids == video_token_id] = 2
    return types


def vl_forward_kwargs(config, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      pixel_values: torch.Tensor | None = None,
                      image_grid_thw: torch.Tensor | None = None) -> dict:
    """Keyword arguments for a Qwen2-VL forward over prompt+completion sequences.

    transformers 5.x raises if `image_grid_thw` is passed without `mm_token_type_ids`; the
    processor returns it only for the prompt, so it is rebuilt here from the full input ids.
    """
    kwargs = {"input_ids": input_ids}
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    if pixel_values is not None:
        kwargs["pixel_values"] = pixel_values
        kwargs["image_grid_thw"] = image_grid_thw
        kwargs["mm_token_type_ids"] = mm_token_type_ids(input_ids, config.image_token_id, config.video_token_id)
    return kwargs


def param_count(model_dir) -> int:
    """Number of parameters stored in a directory's safetensors files (tied weights once)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                total += math.prod(st.get_slice(name).get_shape())
    return total
