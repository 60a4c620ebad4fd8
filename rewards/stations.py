"""Station-name normalisation and metro line tables (RewardMap / ReasonMap).

The tables map a line name to its ordered station names. ReasonMap decorates
station names with transfer/branch markers, which are stripped on load.
"""

from __future__ import annotations

import functools
import json
import os
import re

from rewards.errors import RowError

# Markers found in ReasonMap's station tables (English and Chinese forms). The
# unspaced English forms come last: two New York names ("Court St
# Station(Transfer Station)") lack the space the released code expects.
MARKERS = (" (Transfer Station)", " (Branch-starting Station)", "（换乘站）", "（支线起始站）",
           "(Transfer Station)", "(Branch-starting Station)")

# Ordered (old, new) substitutions of RewardMap's `clean_string`. Order matters:
# "Univ." is expanded before "Univ", and the second rule also re-expands the
# "Univ" inside "University" ("Universityersity"). That is harmless because
# both sides of every comparison go through the same function, so we keep it
# to match the released comparisons exactly.
_REPLACEMENTS = (
    ("Metro", ""), ("metro", ""), (",", ""), ("*", ""), ("\n", ""), ("'", ""),
    ("Univ.", "University"), ("Univ", "University"),
    ("Tech.", "Technology"), ("Tech", "Technology"),
    ("road", "lu"), ("Road", "lu"),
    ("Station", ""), ("station", ""),
    ("Asian Games Village", "yayuncun"),
)
# A parenthetical in ASCII or full-width brackets, e.g. "(Line 2)" or "（东）".
_PARENTHETICAL = re.compile(r"[(（][^)）]*[)）]")
_SPACE_OR_HYPHEN = re.compile(r"[\s\-]+")


def strip_markers(name: str) -> str:
    """Remove ReasonMap's transfer/branch markers and surrounding whitespace."""
    for marker in MARKERS:
        name = name.replace(marker, "")
    return name.strip()


@functools.lru_cache(maxsize=65536)
def clean_station(name: str) -> str:
    """RewardMap's `clean_string`: the key two station names are compared by.

    Applies `_REPLACEMENTS` in order, drops one trailing 站, removes
    parentheticals, whitespace and hyphens, then lower-cases.
    """
    for old, new in _REPLACEMENTS:
        name = name.replace(old, new)
    if name.endswith("站"):
        name = name[:-1]
    name = _PARENTHETICAL.sub("", name)
    return _SPACE_OR_HYPHEN.sub("", name).lower()


def _validated(table: object) -> dict[str, list[str]]:
    """Check the {line: [station, ...]} shape and strip markers."""
    if not isinstance(table, dict):
        raise RowError(f"line table must be a JSON object, got {type(table).__name__}")
    if not table:
        raise RowError("line table is empty")
    out: dict[str, list[str]] = {}
    for line, stations in table.items():
        if not isinstance(line, str):
            raise RowError(f"line table key {line!r} is not a string")
        if not isinstance(stations, (list, tuple)) or not all(isinstance(s, str) for s in stations):
            raise RowError(f"line table entry {line!r} must be a list of station names")
        out[line] = [strip_markers(s) for s in stations]
    return out


@functools.lru_cache(maxsize=256)
def _load_path(path: str, mtime_ns: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    # Cached per (path, mtime) because every rollout of a prompt re-reads the
    # same small file; the result is immutable so callers cannot corrupt it.
    del mtime_ns  # only part of the cache key
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as exc:
        raise RowError(f"cannot read line table {path!r}: {exc}") from exc
    return tuple((k, tuple(v)) for k, v in _validated(raw).items())


def load_line_table(obj: object) -> dict[str, list[str]]:
    """Line name -> ordered, marker-free station names (key order kept).

    `obj` is a dict, a JSON string of a dict, or a path to a JSON file.
    Raises RowError when it is none of these or is malformed.
    """
    if isinstance(obj, dict):
        return _validated(obj)
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        try:
            return _validated(json.loads(obj))
        except ValueError as exc:
            if isinstance(exc, RowError):
                raise
            raise RowError(f"line table is not valid JSON: {exc}") from exc
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError as exc:
            raise RowError(f"cannot read line table {path!r}: {exc}") from exc
        return {k: list(v) for k, v in _load_path(path, mtime)}
    raise RowError(f"line table must be a dict, JSON string or path, got {type(obj).__name__}")
