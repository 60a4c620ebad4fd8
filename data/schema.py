"""The row schema every question uses (synthetic, real or loaded), its Arrow schema and text helpers.

answer: 1/0 for torf, the count for counting2/3, the option index 0-3 for counting1, -1 for planning.
question_transfer_count: transfers on the fewest-transfer route between station_1 and station_2, 0 when
the question has no station pair. routes: JSON list of routes, each a list of
{route_name, departure_stop, arrival_stop} ("[]" unless planning).
"""
from __future__ import annotations

import json

import pyarrow as pa

DIFFICULTIES = ("easy", "middle", "hard")
SOURCES = ("synthetic", "real", "reasonmap")
OPTION_LETTERS = "ABCD"

ARROW_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("question", pa.string()),
    ("answer", pa.int64()),
    ("type", pa.string()),
    ("difficulty_city", pa.string()),
    ("city_line_count", pa.int64()),
    ("city_transfer_count", pa.int64()),
    ("question_transfer_count", pa.int64()),
    ("country", pa.string()),
    ("city", pa.string()),
    ("station_1", pa.string()),
    ("station_2", pa.string()),
    ("json", pa.string()),
    ("figure", pa.binary()),
    ("map_text", pa.string()),
    ("options", pa.list_(pa.string())),
    ("routes", pa.string()),
    ("reference_response", pa.string()),
    ("source", pa.string()),
])
ROW_FIELDS = tuple(ARROW_SCHEMA.names)

# Values for fields a loaded row may lack.
DEFAULTS = {
    "question_transfer_count": 0, "country": "", "city": "", "station_1": "", "station_2": "",
    "json": "{}", "figure": None, "map_text": "", "options": [], "routes": "[]",
    "reference_response": "", "source": "reasonmap",
}


def line_table_json(lines: dict[str, list[str]]) -> str:
    """The clean line -> stations table as a JSON string, table order kept, non-ASCII kept readable."""
    return json.dumps(lines, ensure_ascii=False)


def map_text(lines: dict[str, list[str]]) -> str:
    """One text line per metro line: `Line 2: A - B - C`."""
    return "\n".join(f"{name}: {' - '.join(stops)}" for name, stops in lines.items())


def line_ref(name: str) -> str:
    """How a question names a line: "Line 2" stays, a bare key "A" or "Azul" becomes "line A"."""
    lowered = name.lower()
    if lowered.startswith("line") or lowered.endswith("line") or "线" in name:
        return name
    return f"line {name}"


def boxed(value) -> str:
    return "\\boxed{" + str(value) + "}"


def planning_text(route: list[tuple[str, str, str]]) -> str:
    """A route in the sections format the planning scorer reads."""
    return "\n--\n".join(
        f"Route Name: {line}\nDeparture Stop: {dep}\nArrival Stop: {arr}" for line, dep, arr in route
    )


def route_json(routes: list[list[tuple[str, str, str]]]) -> str:
    """Reference routes as the `routes` JSON string."""
    return json.dumps(
        [[{"route_name": ln, "departure_stop": d, "arrival_stop": a} for ln, d, a in r] for r in routes],
        ensure_ascii=False,
    )
