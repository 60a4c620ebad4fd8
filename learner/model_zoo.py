"""Resolve a model spec (a local path or a known name) to a local checkpoint directory.

Named models are built on first use into a cache directory and reused afterwards. A build
goes to a private temp directory that is renamed into place, so concurrent processes
(Ray actors, parallel tests) never see a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
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
    """Local directory of `spec`: an existing checkpoint path, or a named model built on demand."""
    if spec in MODEL_NAMES:
        return str(_ensure_built(spec, Path(cache_dir) if cache_dir else default_cache_dir(), seed,
                                 dict(overrides or {})))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json; not a transformers checkpoint")
        return spec if path == Path(spec) else str(path)
    raise ValueError(f"unknown model {spec!r}: not a directory and not one of {', '.join(MODEL_NAMES)}")


def is_vision_model(path) -> bool:
    """True when the checkpoint at `path` is a vision-language model."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    return "vision_config" in cfg


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
