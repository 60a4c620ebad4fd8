"""Resolve a model spec (a local path, a known name or a Hugging Face hub id) to what loaders take.

Named models are built on first use into a cache directory and reused afterwards. A build
goes to a private temp directory that is renamed into place, so concurrent processes
(Ray actors, parallel tests) never see a half-written model. A hub id (`org/name`) is passed
through unchanged: transformers and vLLM fetch it on the cluster (or read their cache offline).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

TINY_QWEN2 = "tiny-qwen2"
TINY_QWEN2_VL = "tiny-qwen2-vl"
SMOLLM2 = "smollm2-135m-instruct"
MODEL_NAMES = (TINY_QWEN2, TINY_QWEN2_VL, SMOLLM2)

# Bump when a builder changes what it writes, so stale cache entries are not reused.
BUILD_VERSION = 3

# Overrides that shape the tokenizer rather than the network.
TOKENIZER_KEYS = {"vocab_size": 1024, "corpus_networks": 200, "corpus_seed": 0, "answer_tokens": True}
TEXT_KEYS = {"hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
             "max_position_embeddings"}
VISION_KEYS = TEXT_KEYS | {"vision_depth", "vision_embed_dim", "vision_heads", "min_pixels", "max_pixels"}

# `org/name` as the hub spells repository ids (no leading dot or dash, no path beyond one slash)
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def default_cache_dir() -> Path:
    """`$WAYPOINT_CACHE`, else `~/.cache/waypoint`."""
    return Path(os.environ.get("WAYPOINT_CACHE") or Path.home() / ".cache" / "waypoint")


def cache_entry_name(name: str, seed: int = 0, overrides: dict | None = None) -> str:
    """Directory name encoding the model name, seed and a short hash of the overrides."""
    key = json.dumps({"v": BUILD_VERSION, "overrides": overrides or {}}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    if name == SMOLLM2:
        return f"{name}-{digest}"  # a converted checkpoint: the seed plays no part
    return f"{name}-seed{seed}-{digest}"


def resolve_model(spec: str, cache_dir: str | None = None, seed: int = 0,
                  overrides: dict | None = None) -> str:
    """What the loaders get for `spec`: an existing checkpoint directory, a named model built on demand, or a
    Hugging Face hub id (`org/name`, unchanged; with HF_HUB_OFFLINE=1 only when the hub cache holds it)."""
    if spec in MODEL_NAMES:
        return str(_ensure_built(spec, Path(cache_dir) if cache_dir else default_cache_dir(), seed,
                                 dict(overrides or {})))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json; not a transformers checkpoint")
        return spec if path == Path(spec) else str(path)
    if is_hub_id(spec):
        if hub_offline() and not _in_hub_cache(spec):
            raise ValueError(f"model {spec!r} is a Hugging Face hub id, but HF_HUB_OFFLINE=1 and the hub cache "
                             f"({_hub_cache_dir()}) does not hold it: download it first "
                             f"(`huggingface-cli download {spec}`), point model.name at a local checkpoint, "
                             f"or unset HF_HUB_OFFLINE")
        return spec
    raise ValueError(f"unknown model {spec!r}: not a directory, not a hub id (org/name) and not one of "
                     f"{', '.join(MODEL_NAMES)}")


def is_hub_id(spec: str) -> bool:
    """`org/name` that is not an existing local path."""
    return bool(HUB_ID.fullmatch(spec)) and not Path(spec).expanduser().exists()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
        return os.environ.get("HF_HUB_CACHE") or HF_HUB_CACHE
    except ImportError:  # pragma: no cover
        return "the Hugging Face cache"


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=os.environ.get("HF_HUB_CACHE"))
    return isinstance(found, str)


def local_model_dir(spec: str) -> str:
    """A local directory holding the checkpoint `spec` resolves to: itself for a path, the hub cache's snapshot
    for a hub id (downloaded unless HF_HUB_OFFLINE=1), for code that reads the files (copies, conversions)."""
    if not is_hub_id(spec):
        return spec
    from huggingface_hub import snapshot_download
    return snapshot_download(spec, local_files_only=hub_offline(), cache_dir=os.environ.get("HF_HUB_CACHE"))


def is_vision_model(path) -> bool:
    """True when the checkpoint at `path` (a local directory or a hub id) is a vision-language model."""
    local = Path(path).expanduser() / "config.json"
    if local.is_file():
        return "vision_config" in json.loads(local.read_text())
    from transformers import AutoConfig   # a hub id: its config (downloaded, or from the cache offline)
    return getattr(AutoConfig.from_pretrained(str(path)), "vision_config", None) is not None


def resolve_attn_implementation(requested: str, dtype: str | None = None) -> str:
    """The transformers `attn_implementation` to load with. `auto` becomes flash_attention_2 when the flash_attn
    package is installed, CUDA is available and the dtype is 16-bit (flash-attn has no float32 kernels), and sdpa
    otherwise; any other value (sdpa, eager, flash_attention_2, ...) is returned as asked."""
    if requested != "auto":
        return requested
    import importlib.util
    if dtype in ("float32", "fp32") or importlib.util.find_spec("flash_attn") is None:
        return "sdpa"
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "sdpa"
    return "flash_attention_2" if torch.cuda.is_available() else "sdpa"


def _ensure_built(name: str, cache_dir: Path, seed: int, overrides: dict) -> Path:
    _check_overrides(name, overrides)
    final = cache_dir / cache_entry_name(name, seed, overrides)
    if (final / "config.json").is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache_dir))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the published model should not be
    try:
        build_named(name, tmp, seed, overrides)
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Atomically move a finished build into place; if another process won the race, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / "config.json").is_file():
            raise


def _check_overrides(name: str, overrides: dict) -> None:
    allowed = {TINY_QWEN2: TEXT_KEYS | TOKENIZER_KEYS.keys(),
               TINY_QWEN2_VL: VISION_KEYS | TOKENIZER_KEYS.keys(),
               SMOLLM2: set()}[name]
    unknown = set(overrides) - allowed
    if unknown:
        raise ValueError(f"overrides not supported by {name}: {sorted(unknown)}; allowed: {sorted(allowed)}")


def build_named(name: str, out_dir, seed: int = 0, overrides: dict | None = None) -> Path:
    """Build model `name` into `out_dir` (no caching)."""
    overrides = dict(overrides or {})
    if name == SMOLLM2:
        from learner.smollm2 import convert_smollm2

        return convert_smollm2(out_dir)
    from learner import tiny_models

    tok_args = {k: overrides.pop(k, default) for k, default in TOKENIZER_KEYS.items()}
    tokenizer = tiny_tokenizer(**tok_args)
    builder = tiny_models.build_tiny_qwen2 if name == TINY_QWEN2 else tiny_models.build_tiny_qwen2_vl
    return builder(out_dir, tokenizer, seed=seed, **overrides)


def tiny_tokenizer(vocab_size: int = 1024, corpus_networks: int = 200, corpus_seed: int = 0,
                   answer_tokens: bool = True):
    """The BPE tokenizer of the tiny models, trained on the task corpus.

    Its corpus seed is fixed separately from the model seed, so tiny models built with
    different seeds share one vocabulary.
    """
    from data.corpus import tokenizer_corpus
    from learner.tiny_models import train_tokenizer

    return train_tokenizer(tokenizer_corpus(corpus_networks, corpus_seed), vocab_size=vocab_size,
                           answer_tokens=answer_tokens)
