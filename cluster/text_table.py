"""Fixed-width console tables: each column a header and a format spec (e.g. `>8.3f`); the header takes the
spec's alignment and width. A None cell is left blank at the column's width."""
from __future__ import annotations

import re


def fixed_width(columns: list[tuple[str, str]], rows: list[list]) -> list[str]:
    """[header line, one line per row]."""
    widths = [re.match(r"[<>^]?\d*", spec).group(0) for _, spec in columns]
    lines = ["".join(f"{name:{w}}" for (name, _), w in zip(columns, widths))]
    for row in rows:
        lines.append("".join(f"{'':{w}}" if v is None else f"{v:{spec}}"
                             for v, (_, spec), w in zip(row, columns, widths)))
    return lines
