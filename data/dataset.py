"""Row files: write our parquet; read ours and the ReasonMap / ReasonMap-Plus layouts (parquet, JSON,
JSONL, or a folder of those), and rows the way users have them in Hugging Face `datasets`: a `save_to_disk`
folder (the released RewardMap loads its data with `load_from_disk`) or a hub dataset id (`load_dataset`).
Malformed records are never raised or silently dropped: they are listed in `LoadResult.errors` as
(index, reason) and counted by reason in `LoadResult.summary()`.

`datasets` image columns are read undecoded ({"bytes", "path"} dicts, which `data.images.figure_bytes` takes),
so a broken image is one malformed row, not a failed load."""
from __future__ import annotations

import json
import re
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


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def is_hub_id(text: str) -> bool:
    """'owner/name' that is not a local path (nor a missing data file's name): what `datasets.load_dataset`
    would look up on the hub."""
    return bool(_HUB_ID.match(text)) and not Path(text).exists() and not text.endswith(SUFFIXES)


def is_hf_source(source: str | Path) -> bool:
    """Rows that `datasets` reads: a save_to_disk folder, or a hub id (`hf_records`)."""
    return is_saved_dataset(Path(source)) or is_hub_id(str(source))


def _undecoded(ds):
    from datasets import Image
    for name, feature in ds.features.items():
        if isinstance(feature, Image):
            ds = ds.cast_column(name, Image(decode=False))
    return ds


def _pick_split(data, split: str, where: str):
    from datasets import DatasetDict
    if isinstance(data, DatasetDict):
        if split not in data:
            raise DataFileError(f"{where}: no split {split!r} (has {sorted(data)}); set data.split")
        return data[split]
    return data


def hf_records(source: str, split: str = "train") -> list[dict]:
    """Raw records of a saved dataset folder or a hub id, in order. A folder that `load_from_disk` cannot read,
    a missing split, or a hub id that cannot be reached raise DataFileError naming the folder or the id."""
    import datasets
    path = Path(source)
    if is_saved_dataset(path):
        try:
            data = datasets.load_from_disk(str(path))
        except Exception as exc:  # noqa: BLE001 - whatever `datasets` raises, the user needs the folder named
            raise DataFileError(f"{path}: not a readable save_to_disk folder: {type(exc).__name__}: "
                                f"{str(exc)[:300]}") from None
        where = str(path)
    elif is_hub_id(source):
        try:
            data = datasets.load_dataset(source, split=split)
        except Exception as exc:  # noqa: BLE001 - offline, unknown id, gated: all need the id named
            raise DataFileError(f"hub dataset {source!r} (split {split!r}; no local file or folder has that "
                                f"name) could not be loaded: "
                                f"{type(exc).__name__}: {str(exc)[:300]}. Offline, save it elsewhere with "
                                "`datasets.load_dataset(...).save_to_disk(DIR)` and set data.path to DIR") from None
        where = f"hub dataset {source!r}"
    else:
        raise FileNotFoundError(f"{source}: not a data file, a folder, a save_to_disk folder or a hub id")
    try:
        return list(_undecoded(_pick_split(data, split, where)))
    except DataFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a truncated arrow shard, found only when read
        raise DataFileError(f"{where}: cannot read its records: {type(exc).__name__}: {str(exc)[:300]}") from None


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not path.exists():
        raise FileNotFoundError(f"no data file or folder at {path}")
    return [path]


def _record_groups(source: str | Path, split: str):
    """(base_dir, stem, records) per file under `source`, or once for a saved dataset folder / hub id."""
    path = Path(source)
    if is_hf_source(source):
        yield (path if path.is_dir() else Path(".")), path.name, hf_records(str(source), split)
        return
    for file in _files(path):
        yield file.parent, file.stem, read_records(file)


def load_rows(path: str | Path, default_type: str | None = None, question_field: str = "question_short",
              split: str = "train") -> LoadResult:
    """All records under `path` (files, a folder of them, a save_to_disk folder or a hub id; `split` for the
    last two) normalised to the row schema; indices count records across files."""
    result, index = LoadResult(rows=[], path=str(path)), 0
    for base_dir, stem, records in _record_groups(path, split):
        for raw in records:
            try:
                if isinstance(raw, RowError):
                    raise raw
                row = normalize_row(raw, index, base_dir=base_dir, default_type=default_type,
                                    question_field=question_field, stem=stem)
                result.rows.append(row)
            except RowError as exc:
                result.errors.append((index, str(exc)))
            index += 1
    return result
