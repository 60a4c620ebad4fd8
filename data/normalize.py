"""Turn one raw record (ours, ReasonMap-Plus or ReasonMap) into the row schema of `data.schema`.

- ReasonMap-Plus: question, answer, type ("TorF1", "Counting2", ... -> lower case), figure (path, base64,
  bytes or HF Image dict), json (path relative to the data file, dict or JSON string).
- ReasonMap: question_short / question_long (pick with `question_field`), routes, no type -> planning.
Anything unusable raises RowError("<reason>: <detail>"); the reason before the colon groups the summary.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from data.images import figure_bytes
from data.network import REAL_THRESHOLDS, TransitNetwork, city_difficulty
from data.schema import (
    DEFAULTS, DIFFICULTIES, OPTION_LETTERS, SOURCES, boxed, line_table_json, map_text,
    planning_text, route_json,
)
from rewards.errors import RowError
from rewards.map_vqa import QUESTION_TYPES
from rewards.stations import load_line_table, strip_markers

_TRUE = {"1", "yes", "true", "y"}
_FALSE = {"0", "no", "false", "n"}
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


def _type(raw: dict, default_type: str | None) -> str:
    qtype = raw.get("type")
    if qtype in (None, ""):
        if any(k in raw for k in ("routes", "question_short", "question_long")):
            qtype = "planning"  # ReasonMap rows carry no type: they are all route planning
        elif default_type:
            qtype = default_type
        else:
            raise RowError("missing type: no 'type' field and no default_type")
    qtype = str(qtype).strip().lower()
    if qtype not in QUESTION_TYPES:
        raise RowError(f"unknown type: {qtype!r}")
    return qtype


def _question(raw: dict, question_field: str) -> str:
    for key in ("question", question_field, "question_short", "question_long"):
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            # RewardMap prepends "<image>\n" itself; a copy in the data would double the image slot.
            return value.replace("<image>", "").strip()
    raise RowError(f"missing question: none of 'question', {question_field!r}")


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:       # isdigit() accepts '²', which int() refuses, and int() refuses over 4300 digits
            value = int(value.strip())
        except ValueError:
            raise RowError(f"bad {what}: {value[:40]!r} is not an integer") from None
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT64_MIN <= value <= _INT64_MAX:          # the row schema stores int64
            raise RowError(f"bad {what}: {str(value)[:40]} is out of the int64 range")
        return value
    raise RowError(f"bad {what}: {str(value)[:40]!r} is not an integer")


def _count(raw: dict, key: str, default: int) -> int:
    value = raw.get(key)
    return default if value is None or value == "" else _int(value, key)


def _answer(raw: dict, qtype: str) -> int:
    if qtype == "planning":
        return -1
    value = raw.get("answer")
    if value is None or value == "":
        raise RowError("missing answer")
    text = str(value).strip().lower()
    if qtype.startswith("torf"):
        if text in _TRUE or text in _FALSE:
            return int(text in _TRUE)
        raise RowError(f"bad answer: {value!r} is not yes/no for {qtype}")
    if qtype == "counting1" and len(text) == 1 and text.upper() in OPTION_LETTERS:
        return OPTION_LETTERS.index(text.upper())
    answer = _int(value, "answer")
    if answer < 0 or (qtype == "counting1" and answer > 3):
        raise RowError(f"bad answer: {answer} out of range for {qtype}")
    return answer


def _table_path(text: str, base_dir: Path | None) -> Path:
    """A json path as written, tried against the data file's folder, its parents, then the cwd."""
    path = Path(text)
    if path.is_absolute():
        return path
    bases = [base_dir, *base_dir.parents] if base_dir is not None else []
    for base in [*bases, Path.cwd()]:
        if (base / path).is_file():
            return base / path
    return (base_dir or Path.cwd()) / path


def _lines(raw: dict, qtype: str, base_dir: Path | None) -> dict[str, list[str]] | None:
    value = raw.get("json")
    if value is None or value == "" or value == {}:
        if qtype == "planning":
            raise RowError("missing json: planning needs the line table")
        return None
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        value = str(_table_path(value, base_dir))
    try:
        return load_line_table(value)
    except RowError as exc:
        raise RowError(f"bad json: {exc}") from None


@functools.lru_cache(maxsize=256)
def _network(table_json: str) -> TransitNetwork:
    # Rows of one city share one table; build its graph once.
    return TransitNetwork(city="", country="", lines=json.loads(table_json))


def _routes(raw: dict) -> list[list[tuple[str, str, str]]]:
    value = raw.get("routes")
    if value is None or value == "":
        return []
    try:
        routes = json.loads(value) if isinstance(value, str) else value
        if routes and isinstance(routes[0], dict):
            routes = [routes]  # a single route given without the outer list
        return [[(str(s["route_name"]), strip_markers(str(s["departure_stop"])),
                  strip_markers(str(s["arrival_stop"]))) for s in route] for route in routes]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise RowError(f"bad routes: {type(exc).__name__}: {exc}") from None


def _options(raw: dict) -> list[str]:
    value = raw.get("options")
    if value is None or value == "":
        return []
    if not isinstance(value, (list, tuple)):          # a string would become one option per character
        raise RowError(f"bad options: expected a list, got {type(value).__name__}")
    return [str(o) for o in value]


def _difficulty(raw: dict, line_count: int, transfer_count: int) -> str:
    value = raw.get("difficulty_city")
    if value in (None, ""):
        return city_difficulty(line_count, transfer_count, REAL_THRESHOLDS)
    value = {"medium": "middle"}.get(str(value).strip().lower(), str(value).strip().lower())
    if value not in DIFFICULTIES:
        raise RowError(f"bad difficulty_city: {raw.get('difficulty_city')!r}")
    return value


def _reference(qtype: str, answer: int, net, s1: str, s2: str, routes) -> str:
    """An ideal response in the scorer's format (planning: the graph's fewest-transfer route)."""
    if qtype.startswith("torf"):
        return boxed("yes" if answer else "no")
    if qtype == "counting1":
        return boxed(OPTION_LETTERS[answer])
    if qtype != "planning":
        return boxed(answer)
    route = net.fewest_transfer_route(s1, s2) if net is not None else []
    return planning_text(route or (routes[0] if routes else []))


def normalize_row(raw: dict, index: int, base_dir: Path | None = None, default_type: str | None = None,
                  question_field: str = "question_short", stem: str = "row") -> dict:
    """One raw record -> one schema row; RowError if it cannot be used."""
    if not isinstance(raw, dict):
        raise RowError(f"not an object: got {type(raw).__name__}")
    qtype = _type(raw, default_type)
    question, answer = _question(raw, question_field), _answer(raw, qtype)
    lines = _lines(raw, qtype, base_dir)
    table = line_table_json(lines) if lines else "{}"
    net = _network(table) if lines else None
    s1, s2 = (strip_markers(str(raw.get(k) or "")) for k in ("station_1", "station_2"))
    if qtype == "planning" and not (s1 and s2):
        raise RowError("missing station: planning needs station_1 and station_2")
    routes = _routes(raw)
    if qtype == "planning" and not routes and net is not None:
        routes = [r for r in [net.fewest_transfer_route(s1, s2)] if r]
    line_count = _count(raw, "city_line_count", len(lines or {}))
    transfer_default = len(net.transfer_stations()) if net else 0
    transfer_count = _count(raw, "city_transfer_count", transfer_default)
    qt_default = net.route_transfer_count(s1, s2) if net is not None and s1 and s2 else 0
    try:
        figure = figure_bytes(raw.get("figure"), base_dir)
    except ValueError as exc:
        raise RowError(f"bad figure: {exc}") from None
    source = raw.get("source") if raw.get("source") in SOURCES else DEFAULTS["source"]
    return {
        "id": str(raw.get("id") or f"{stem}-{index}"), "question": question, "answer": answer, "type": qtype,
        "difficulty_city": _difficulty(raw, line_count, transfer_count), "city_line_count": line_count,
        "city_transfer_count": transfer_count,
        "question_transfer_count": _count(raw, "question_transfer_count", qt_default),
        "country": str(raw.get("country") or ""), "city": str(raw.get("city") or ""),
        "station_1": s1, "station_2": s2, "json": table, "figure": figure,
        "map_text": map_text(lines) if lines else "", "options": _options(raw),
        "routes": route_json(routes), "reference_response": str(raw.get("reference_response") or "")
        or _reference(qtype, answer, net, s1, s2, routes), "source": source,
    }
