"""Build (or find in the cache) the named models and print where they are.

    python -m cluster.build_models [--models tiny-qwen2,tiny-qwen2-vl] [--cache-dir D] [--seed S]
"""
from __future__ import annotations

import argparse
import time

from learner.model_zoo import MODEL_NAMES, TINY_QWEN2, TINY_QWEN2_VL, resolve_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"{TINY_QWEN2},{TINY_QWEN2_VL}",
                        help=f"comma-separated names from: {', '.join(MODEL_NAMES)}")
    parser.add_argument("--cache-dir", default=None, help="default: $WAYPOINT_CACHE or ~/.cache/waypoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _quiet_progress_bars()
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        start = time.perf_counter()
        path = resolve_model(name, cache_dir=args.cache_dir, seed=args.seed)
        seconds = time.perf_counter() - start
        print(f"{name}: {path}  params={_param_count(path):,}  ({seconds:.1f} s)", flush=True)


def _param_count(path: str) -> int:
    from learner.tiny_models import param_count

    return param_count(path)


def _quiet_progress_bars() -> None:
    """transformers' per-shard progress bars only clutter this short output."""
    from transformers.utils import logging

    logging.disable_progress_bar()


if __name__ == "__main__":
    main()
