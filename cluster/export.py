"""`python -m cluster.export --checkpoint DIR --out DIR [--config X]`: any run checkpoint as a Hugging Face model.

DIR is a run's `<run_dir>/checkpoint` (its latest checkpoint) or one `step-N` directory. A final checkpoint
already holds `hf/` (written at the end of every run); otherwise the DeepSpeed learner state is consolidated
(fp32, any ZeRO stage, DeepSpeed's zero_to_fp32) and, for a LoRA run, its adapters merged into the base model.
The base model comes from --config (default: the run's own config.json beside the checkpoint directory).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from cluster.checkpoint import latest_checkpoint


def export_policy(checkpoint: str | Path, base_path: str, out_dir: str | Path) -> str:
    """A Hugging Face directory for `checkpoint`: itself if it is one, its `hf/` copy, or a consolidation."""
    path = Path(checkpoint)
    if (path / "config.json").is_file():
        return str(path)
    step = latest_checkpoint(path) or path
    out = Path(out_dir)
    if (step / "hf" / "config.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(step / "hf", out)
        return str(out)
    learner = step / "learner"
    if not (learner / "latest").is_file():
        raise FileNotFoundError(f"{checkpoint}: neither a Hugging Face model (config.json) nor a waypoint run "
                                f"checkpoint (learner/latest)")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from learner.hf_export import merge_lora_state, save_hf_policy
    state = get_fp32_state_dict_from_zero_checkpoint(str(learner), tag=(learner / "latest").read_text().strip(),
                                                     exclude_frozen_parameters=(learner / "lora.json").is_file())
    if (learner / "lora.json").is_file():
        state = merge_lora_state(state, json.loads((learner / "lora.json").read_text()), base_path)
    return save_hf_policy(state, base_path, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.export", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="<run_dir>/checkpoint or one of its step-N directories")
    ap.add_argument("--out", required=True, help="where to write the Hugging Face model directory")
    ap.add_argument("--config", default=None, help="the run's config (default: <run_dir>/config.json)")
    args = ap.parse_args(argv)
    from cluster.config import ConfigError, WaypointConfig, load_config
    from cluster.tasks import resolve_policy
    ckpt = Path(args.checkpoint)
    try:
        if args.config:
            cfg = load_config(args.config)
        else:
            run_config = next((p / "config.json" for p in (ckpt.parent, ckpt.parent.parent)
                               if (p / "config.json").is_file()), None)
            if run_config is None:
                raise ConfigError(f"no config.json beside {ckpt}: pass --config")
            cfg = WaypointConfig.model_validate_json(run_config.read_text())
        base_path, _, _ = resolve_policy(cfg)
        out = export_policy(ckpt, base_path, args.out)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"export error: {e}", file=sys.stderr)
        return 2
    print(f"[waypoint] exported {ckpt} -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
