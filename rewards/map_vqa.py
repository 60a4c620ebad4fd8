"""RewardMap reward for transit-map VQA (ReasonMap / ReasonMap-Plus rows).

    r = W · (format_weight · F + 10 · 1[acc] + 0.5 · D)

W is the difficulty weight, F the format term (paper; absent in the released
code), D the detail reward (planning; optionally Counting1). With
format_weight=0, detail_penalty="released" and unwrap_text=False this is the
released reward.
"""

from __future__ import annotations

import numbers
import re
from typing import NamedTuple

from rewards.answer import boxed_content, clean_answer, extract_final_answer, extract_stops
from rewards.errors import RowError
from rewards.stations import clean_station, load_line_table

CORRECT = 10.0                # reward for a correct answer
DETAIL_WEIGHT = 0.5           # extra_score_weighting on D
CITY_WEIGHTS = {"easy": 1.0, "middle": 1.2, "hard": 1.5}
TRANSFER_WEIGHT = 0.5         # added to W for planning questions with T > 0
DETAIL_CAP = 10.0             # D = min(D, 10); no lower clamp
ENDPOINT_BONUS = 2.0          # first departure and last arrival both right
LINE_BONUS_DIRECT = 4.0       # T = 0: section rides the direct line
LINE_BONUS_TRANSFER = 3.0     # T > 0: section names a real line
TRANSFER_BONUS = 1.0          # arrival == next departure, within T transfers
EXTRA_SECTION_PENALTY = 5.0   # "too many segments"
STOP_CREDIT = 0.5             # Counting1 detail, per right (+) / wrong or repeated (-) stop

QUESTION_TYPES = ("torf1", "torf2", "counting1", "counting2", "counting3", "planning")
PENALTY_MODES = ("paper", "released")
# Beijing: the tables fold 八通线 into Line 1 and 大兴线 into Line 4.
LINE_ALIASES = (("八通", "Line 1"), ("大兴", "Line 4"))
_LABELS = ("Route Name:", "Departure Stop:", "Arrival Stop:")
_INTEGER = re.compile(r"[+-]?\d{1,18}")
_LETTERS = "abcd"


class Section(NamedTuple):
    """One ride of a planned route, as written by the model (stripped)."""
    route: str
    departure: str
    arrival: str


# ---------------------------------------------------------------- row fields
def _field(row: dict, name: str):
    if not isinstance(row, dict):
        raise RowError(f"row must be a dict, got {type(row).__name__}")
    if name not in row or row[name] is None:
        raise RowError(f"row field {name!r} is missing")
    return row[name]


def _as_int(value, name: str) -> int:
    """An integer field; integral floats and digit strings are accepted."""
    # numbers.* so numpy scalars from parquet/HF datasets (np.int64) pass too.
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise RowError(f"row field {name!r} must be an integer, got {value!r}")


def _station(row: dict, name: str) -> str:
    value = _field(row, name)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"row field {name!r} must be a non-empty station name")
    return value


def normalize_type(qtype) -> str:
    """'TorF1' / 'Counting2' / 'planning' -> canonical lower-case type."""
    norm = qtype.strip().lower() if isinstance(qtype, str) else None
    if norm not in QUESTION_TYPES:
        raise RowError(f"row field 'type': unknown question type {qtype!r}")
    return norm


def difficulty_weight(qtype, difficulty_city, question_transfer_count) -> float:
    """W = c(d), plus 0.5 for planning with T > 0; c = 1.0 / 1.2 / 1.5."""
    qtype = normalize_type(qtype)
    key = difficulty_city.strip().lower() if isinstance(difficulty_city, str) else None
    if key not in CITY_WEIGHTS:
        raise RowError(f"row field 'difficulty_city': unknown difficulty {difficulty_city!r}")
    weight = CITY_WEIGHTS[key]
    if qtype == "planning" and _transfers(question_transfer_count) > 0:
        weight += TRANSFER_WEIGHT
    return weight


def _transfers(value) -> int:
    if value is None:
        raise RowError("row field 'question_transfer_count' is missing")
    count = _as_int(value, "question_transfer_count")
    if count < 0:
        raise RowError(f"row field 'question_transfer_count' must be >= 0, got {count}")
    return count


# ------------------------------------------------------------------ planning
def _label_value(section: str, label: str) -> str:
    """Text after the first `label`, up to a newline or the next label.

    The released regex needs "Label: value\\n"; we also accept a value ending
    the section or running into the next label on the same line.
    """
    rest = section[section.find(label) + len(label):]
    end = len(rest)
    for stop in ("\n", *_LABELS):
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    return rest[:end].strip()


def parse_route_sections(response: str) -> list[Section]:
    """Split on '--'; keep sections holding all three labels.

    route/departure: see `_label_value`; arrival: everything after the last
    "Arrival Stop:" (so trailing prose there spoils it, as released).
    """
    if not isinstance(response, str):
        return []
    sections = []
    for part in response.split("--"):
        if all(label in part for label in _LABELS):
            sections.append(Section(
                route=_label_value(part, "Route Name:"),
                departure=_label_value(part, "Departure Stop:"),
                arrival=part.split("Arrival Stop:")[-1].strip(),
            ))
    return sections


def canonical_line(route: str) -> str:
    """Apply the Beijing aliases (八通 -> Line 1, 大兴 -> Line 4)."""
    for fragment, line in LINE_ALIASES:
        if fragment in route:
            route = line
    return route


def _stop_key(raw: str) -> str:
    # Model-written stops are cleaned twice, as released (once when parsed,
    # once when compared); a second pass also catches e.g. "STATION".
    return clean_station(clean_station(raw))


def _clean_table(lines: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: [clean_station(s) for s in stations] for name, stations in lines.items()}


def _lines_with(table: dict[str, list[str]], *keys: str) -> list[str]:
    """Line names (table order) whose stations include all `keys`."""
    return [name for name, stops in table.items() if all(k in stops for k in keys)]


def _endpoints_match(sections: list[Section], station_1: str, station_2: str) -> bool:
    return (_stop_key(sections[0].departure) == clean_station(station_1)
            and _stop_key(sections[-1].arrival) == clean_station(station_2))


def planning_accuracy(sections, lines, station_1, station_2) -> bool:
    """acc = 1 iff endpoints match, every route is a table line holding its
    departure and arrival (membership only), and arrival_i == departure_{i+1}."""
    if not sections or not _endpoints_match(sections, station_1, station_2):
        return False
    table = _clean_table(lines)
    for i, sec in enumerate(sections):
        stops = table.get(canonical_line(sec.route))
        dep, arr = _stop_key(sec.departure), _stop_key(sec.arrival)
        if stops is None or dep not in stops or arr not in stops:
            return False
        if i < len(sections) - 1 and arr != _stop_key(sections[i + 1].departure):
            return False
    return True


def planning_detail(sections, lines, station_1, station_2, transfer_count, penalty="paper") -> float:
    """D_plan: +2 endpoints; per section i (0-based): -5 if i+1 > limit,
    +4 (T=0, direct line) or +3 (T>0) for a table line, +1 for a valid
    transfer with i+1 <= T; D = min(D, 10).

    limit = T+1 for penalty="paper", T for "released" (its off-by-one).
    The +4 goes to the first table line holding both endpoints ("paper"),
    or to any such line ("released", whose loop only breaks on a match).
    """
    if penalty not in PENALTY_MODES:
        raise ValueError(f"detail_penalty must be one of {PENALTY_MODES}, got {penalty!r}")
    transfers = _transfers(transfer_count)
    if not sections or not _endpoints_match(sections, station_1, station_2):
        return 0.0
    table = _clean_table(lines)
    direct = _lines_with(table, clean_station(station_1), clean_station(station_2))
    direct = direct[:1] if penalty == "paper" else direct
    limit = transfers + 1 if penalty == "paper" else transfers
    detail = ENDPOINT_BONUS
    for i, sec in enumerate(sections):
        if i + 1 > limit:
            detail -= EXTRA_SECTION_PENALTY
        route = canonical_line(sec.route)
        if route not in table:
            continue
        if transfers == 0:
            detail += LINE_BONUS_DIRECT if route in direct else 0.0
        else:
            detail += LINE_BONUS_TRANSFER
        dep, arr = _stop_key(sec.departure), _stop_key(sec.arrival)
        on_line = dep in table[route] and arr in table[route]
        if (on_line and i < len(sections) - 1 and i + 1 <= transfers
                and arr == _stop_key(sections[i + 1].departure)):
            detail += TRANSFER_BONUS
    return min(detail, DETAIL_CAP)


def route_string(sections) -> str:
    """Canonical route "line:dep>arr|..." (for answer-equivalence classes)."""
    return "|".join(f"{canonical_line(s.route)}:{_stop_key(s.departure)}>{_stop_key(s.arrival)}"
                    for s in sections)


# ---------------------------------------------------------------- counting1
def counting1_detail(stops, lines, station_1, station_2) -> float:
    """+0.5 per distinct correct intermediate stop, -0.5 per wrong or repeated
    one; intermediates lie strictly between the stations on the first table
    line holding both. RowError if no line holds both."""
    table = _clean_table(lines)
    k1, k2 = clean_station(station_1), clean_station(station_2)
    common = _lines_with(table, k1, k2)
    if not common:
        raise RowError("row fields 'station_1'/'station_2' share no line in the table")
    line = table[common[0]]
    lo, hi = sorted((line.index(k1), line.index(k2)))
    truth, seen, detail = set(line[lo + 1:hi]), set(), 0.0
    for stop in stops:
        key = _stop_key(stop)
        if key in truth and key not in seen:
            detail += STOP_CREDIT
            seen.add(key)
        else:
            detail -= STOP_CREDIT
    return detail


# -------------------------------------------------------------------- score
def _in_domain(qtype: str, answer: str) -> bool:
    if qtype.startswith("torf"):
        return answer in ("yes", "no")
    if qtype == "counting1":
        return len(answer) == 1 and answer in _LETTERS
    return bool(_INTEGER.fullmatch(answer))


def _choice_accuracy(qtype: str, answer: str, truth: int) -> bool:
    """TorF: yes iff truth == 1; Counting2/3: int equality; Counting1: a-d -> 0-3."""
    if qtype.startswith("torf"):
        return answer == ("yes" if truth == 1 else "no")
    if qtype == "counting1":
        return len(answer) == 1 and answer in _LETTERS and _LETTERS.index(answer) == truth
    return bool(_INTEGER.fullmatch(answer)) and int(answer) == truth


def score(response: str, row: dict, detail_penalty: str = "paper", format_weight: float = 1.0,
          counting1_detail_enabled: bool = False, unwrap_text: bool = True) -> dict:
    """Score one response: r = W · (format_weight·F + 10·acc + 0.5·D).

    F (waypoint's format term): TorF/Counting -> 1 if a balanced boxed{...}
    exists and, cleaned like the answer, lies in the type's domain (yes/no;
    an integer; one letter a-d); planning -> 1 if a route section parses.
    D: planning_detail if a section parses; counting1_detail if enabled.
    unwrap_text: read \\text{X} as X (False: released, which reads "{x}").
    A broken response scores 0s; a malformed row raises RowError.
    """
    if detail_penalty not in PENALTY_MODES:
        raise ValueError(f"detail_penalty must be one of {PENALTY_MODES}, got {detail_penalty!r}")
    qtype = normalize_type(_field(row, "type"))
    transfers = row.get("question_transfer_count") if isinstance(row, dict) else None
    weight = difficulty_weight(qtype, _field(row, "difficulty_city"), transfers)
    text = response if isinstance(response, str) else ""
    if qtype == "planning":
        fmt, acc, detail, answer = _score_planning(text, row, detail_penalty)
    else:
        fmt, acc, detail, answer = _score_choice(qtype, text, row, counting1_detail_enabled, unwrap_text)
    total = weight * (format_weight * fmt + CORRECT * acc + DETAIL_WEIGHT * detail)
    return {"format": fmt, "accuracy": acc, "detail": detail, "weight": weight,
            "total": total, "answer": answer}


def _table(row: dict) -> dict[str, list[str]]:
    try:
        return load_line_table(_field(row, "json"))
    except RowError as exc:
        raise RowError(f"row field 'json': {exc}") from exc


def _score_planning(text: str, row: dict, penalty: str) -> tuple[float, float, float, str]:
    s1, s2 = _station(row, "station_1"), _station(row, "station_2")
    transfers = _transfers(row.get("question_transfer_count"))
    lines = _table(row)
    sections = parse_route_sections(text)
    if not sections:
        return 0.0, 0.0, 0.0, ""
    acc = float(planning_accuracy(sections, lines, s1, s2))
    detail = planning_detail(sections, lines, s1, s2, transfers, penalty)
    return 1.0, acc, detail, route_string(sections)


def _score_choice(qtype: str, text: str, row: dict, with_detail: bool,
                  unwrap_text: bool) -> tuple[float, float, float, str]:
    truth = _as_int(_field(row, "answer"), "answer")
    detail = 0.0
    if qtype == "counting1" and with_detail:
        # Validate the row before looking at the response.
        s1, s2, lines = _station(row, "station_1"), _station(row, "station_2"), _table(row)
        detail = counting1_detail(extract_stops(text), lines, s1, s2)
    answer = extract_final_answer(text, unwrap_text)
    boxed = boxed_content(text)
    fmt = float(boxed is not None and _in_domain(qtype, clean_answer(boxed, unwrap_text)))
    acc = float(_choice_accuracy(qtype, answer, truth))
    return fmt, acc, detail, answer
