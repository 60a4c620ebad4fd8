"""Row files: write our parquet; read ours and the ReasonMap / ReasonMap-Plus layouts (parquet, JSON,
JSONL, or a folder of those). Malformed records are never raised or silently dropped: they are listed in
`LoadResult.errors` as (index, reason) and counted by reason in `LoadResult.summary()`."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data.normalize import normalize_row
from data.schema import ARROW_SCHEMA, DEFAULTS, ROW_FIELDS
from rewards.errors import RowError

SUFFIXES = (".parquet", ".jsonl", ".json")


@dataclass
class LoadResult:
    rows: list[dict]
    errors: list[tuple[int, str]] = field(default_factory=list)
    path: str = ""

    def summary(self) -> str:
        """One line: rows loaded, malformed records and how many per reason."""
        text = f"{self.path}: {len(self.rows)} rows loaded, {len(self.errors)} malformed"
        if self.errors:
            reasons = Counter(reason.split(":", 1)[0] for _, reason in self.errors)
            text += " (" + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()) + ")"
        return text


def write_parquet(rows: list[dict], path: str | Path) -> None:
    """Rows in the schema of `data.schema.ARROW_SCHEMA` (figure as binary); optional fields may be absent."""
    columns = {}
    for name in ROW_FIELDS:
        missing = [i for i, row in enumerate(rows) if name not in row and name not in DEFAULTS]
        if missing:
            raise KeyError(f"rows {missing[:5]} lack required field {name!r}")
        columns[name] = [row.get(name, DEFAULTS.get(name)) for row in rows]
    table = pa.Table.from_pydict(columns, schema=ARROW_SCHEMA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))


class DataFileError(ValueError):
    """A data file that cannot be read at all (truncated, not its format, not UTF-8); the message names it."""


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read: {exc}") from None


def _json_records(path: Path) -> list:
    """A JSON file: a list of records, or an object holding one under "data", "rows" or "train"."""
    try:
        data = json.loads(_read_bytes(path).decode("utf-8"))
    except (ValueError, RecursionError) as exc:    # UnicodeDecodeError is a ValueError; RecursionError: deep nesting
        raise DataFileError(f"{path}: not a JSON file: {type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(data, dict):
        for key in ("data", "rows", "train"):
            if isinstance(data.get(key), list):
                return data[key]
        return [data]
    return data if isinstance(data, list) else [data]


def _jsonl_records(path: Path) -> list:
    """One record per non-empty line; an unparsable line becomes a RowError placeholder. Lines end at "\n" only:
    str.splitlines would also split inside a JSON string holding U+2028 or U+0085, breaking a valid record."""
    out = []
    for n, raw in enumerate(_read_bytes(path).split(b"\n")):
        try:
            line = raw.decode("utf-8")
            if line.strip():
                out.append(json.loads(line))
        except (ValueError, RecursionError) as exc:    # bad UTF-8 or JSON in this line only
            out.append(RowError(f"bad json line: line {n + 1}: {type(exc).__name__}: {str(exc)[:200]}"))
    return out


def read_records(path: Path) -> list:
    """Raw records of one file, in file order."""
    if path.suffix == ".parquet":
        try:
            return pq.read_table(str(path)).to_pylist()
        except (pa.ArrowException, OSError) as exc:    # truncated or not parquet at all
            raise DataFileError(f"{path}: not a readable parquet file: {exc}") from None
    if path.suffix == ".jsonl":
        return _jsonl_records(path)
    if path.suffix == ".json":
        return _json_records(path)
    raise ValueError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)})")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not path.exists():
        raise FileNotFoundError(f"no data file or folder at {path}")
    return [path]


def load_rows(path: str | Path, default_type: str | None = None, question_field: str = "question_short") -> LoadResult:
    """All records under `path` normalised to the row schema; indices count records across files."""
    path = Path(path)
    result, index = LoadResult(rows=[], path=str(path)), 0
    for file in _files(path):
        for raw in read_records(file):
            try:
                if isinstance(raw, RowError):
                    raise raw
                row = normalize_row(raw, index, base_dir=file.parent, default_type=default_type,
                                    question_field=question_field, stem=file.stem)
                result.rows.append(row)
            except RowError as exc:
                result.errors.append((index, str(exc)))
            index += 1
    return result
