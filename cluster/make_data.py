"""Write a question set to parquet and print what is in it.

    python -m cluster.make_data synthetic --out data.parquet --n-networks 200 --per-type 2 [--no-images]
    python -m cluster.make_data real --out real.parquet --per-type 4 [--root DIR] [--max-side 1024]

All logic lives in `data/`; this only parses arguments, calls it and prints a summary table.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter

from data.dataset import write_parquet
from rewards.map_vqa import QUESTION_TYPES


def _types(text: str) -> list[str]:
    types = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in QUESTION_TYPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown types {unknown}; known: {','.join(QUESTION_TYPES)}")
    return types


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster.make_data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="source", required=True)
    for name in ("synthetic", "real"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True, help="parquet file to write")
        p.add_argument("--types", type=_types, default=list(QUESTION_TYPES), help="comma-separated types")
        p.add_argument("--per-type", type=int, default=2 if name == "synthetic" else 4)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--no-images", action="store_true", help="leave figure empty (text-only models)")
    syn = sub.choices["synthetic"]
    syn.add_argument("--n-networks", type=int, default=200)
    syn.add_argument("--image-size", type=int, default=448)
    real = sub.choices["real"]
    real.add_argument("--root", default=None, help="ReasonMap data folder (default: data.real.reasonmap_root())")
    real.add_argument("--max-side", type=int, default=1024, help="longest image side in pixels")
    real.add_argument("--image-format", choices=("png", "jpeg"), default="png")
    return parser.parse_args(argv)


def summary_table(rows: list[dict]) -> str:
    """Rows per type x difficulty, plus totals per source."""
    counts = Counter((r["type"], r["difficulty_city"]) for r in rows)
    levels = ("easy", "middle", "hard")
    lines = [f"{'type':<10}" + "".join(f"{d:>8}" for d in levels) + f"{'total':>8}"]
    for qtype in QUESTION_TYPES:
        per = [counts[(qtype, d)] for d in levels]
        if sum(per):
            lines.append(f"{qtype:<10}" + "".join(f"{n:>8}" for n in per) + f"{sum(per):>8}")
    totals = [sum(counts[(t, d)] for t in QUESTION_TYPES) for d in levels]
    lines.append(f"{'all':<10}" + "".join(f"{n:>8}" for n in totals) + f"{len(rows):>8}")
    sources = Counter(r["source"] for r in rows)
    lines.append("sources: " + ", ".join(f"{s}={n}" for s, n in sorted(sources.items())))
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.source == "synthetic":
        from data.questions import synthetic_dataset
        rows = synthetic_dataset(args.n_networks, types=args.types, per_type=args.per_type, seed=args.seed,
                                 render_images=not args.no_images, image_size=args.image_size)
    else:
        from data.real import real_dataset
        rows = real_dataset(args.root, types=args.types, per_type=args.per_type, seed=args.seed,
                            max_side=args.max_side, images=not args.no_images, image_format=args.image_format)
    write_parquet(rows, args.out)
    print(summary_table(rows))
    print(f"wrote {len(rows)} rows to {args.out} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
