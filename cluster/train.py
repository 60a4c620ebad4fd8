"""`python -m cluster.train --config configs/cpu_tiny.yaml [--set section.key=value ...]`

Runs locally (a Ray cluster on loopback is started) or, under `ray job submit`, on the cluster it runs in.
"""
from __future__ import annotations

import argparse
import sys

from cluster.config import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.train", description=__doc__.splitlines()[0])
    add_config_args(ap)
    cfg = config_from_args(ap.parse_args(argv))
    if cfg is None:
        return 2
    from cluster.controller import train
    from data.dataset import DataFileError
    try:
        summary = train(cfg)
    except DataFileError as e:          # unreadable data names its file or hub id; the run had nothing yet
        print(f"[waypoint] data error: {e}", file=sys.stderr)
        return 2
    if not summary["accounting"]["closes"]:
        return 1
    return summary["preempted"]["exit_code"] if "preempted" in summary else 0


if __name__ == "__main__":
    sys.exit(main())
