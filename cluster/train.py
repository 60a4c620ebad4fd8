"""`python -m cluster.train --config configs/cpu_tiny.yaml [--set section.key=value ...]`

Runs locally (a Ray cluster on loopback is started) or, under `ray job submit`, on the cluster it runs in.
"""
from __future__ import annotations

import argparse
import sys

from cluster.config import ConfigError, load_config

DEFAULT_CONFIG = "configs/cpu_tiny.yaml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cluster.train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one config value; repeatable")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return 2
    from cluster.controller import train
    summary = train(cfg)
    return 0 if summary["accounting"]["closes"] else 1


if __name__ == "__main__":
    sys.exit(main())
