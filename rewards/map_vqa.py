"""RewardMap reward for transit-map VQA (ReasonMap / ReasonMap-Plus rows).

    r = W · (format_weight · F + 10 · 1[acc] + 0.5 · D)

W is the difficulty weight, F the format term (paper; absent in the released
code), D the detail reward (planning; optionally Counting1). With
format_weight=0, detail_penalty="released" and unwrap_text=False this is the
released reward. answer_format="tags" reads the R1 <think>/<answer> format
(GRPO-CARE) instead of \\boxed{}.
"""

from __future__ import annotations

import numbers
import re

from rewards.answer import (
    ANSWER_OPEN, answer_char_span, boxed_content, clean_answer, extract_final_answer, extract_stops,
    has_answer_marker, split_reasoning,
)
from rewards.canonical import canonical_answer
from rewards.consistency import consistency
from rewards.errors import RowError
from rewards.routes import (
    Section, canonical_line, parse_route_sections, route_string, stop_key,
)
from rewards.stations import clean_station, load_line_table

CORRECT = 10.0                # reward for a correct answer
DETAIL_WEIGHT = 0.5           # extra_score_weighting on D
CITY_WEIGHTS = {"easy": 1.0, "middle": 1.2, "hard": 1.5}
TRANSFER_WEIGHT = 0.5         # added to W for planning questions with T > 0
DETAIL_CAP = 10.0             # D = min(D, 10); no lower clamp
ENDPOINT_BONUS = 2.0          # first departure and last arrival both right
LINE_BONUS_DIRECT = 4.0       # T = 0: section rides a line holding both endpoints
LINE_BONUS_TRANSFER = 3.0     # T > 0: section names a real line
TRANSFER_BONUS = 1.0          # arrival == next departure, within T transfers
EXTRA_SECTION_PENALTY = 5.0   # "too many segments"
STOP_CREDIT = 0.5             # Counting1 detail, per right (+) / wrong or repeated (-) stop

QUESTION_TYPES = ("torf1", "torf2", "counting1", "counting2", "counting3", "planning")
PENALTY_MODES = ("paper", "released")
ANSWER_FORMATS = ("boxed", "tags")
# R1 format (GRPO-CARE's r^fmt), matched against the whole response.
_TAGS_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", flags=re.S)
_INTEGER = re.compile(r"[+-]?\d{1,18}")
_LETTERS = "abcd"


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
def _clean_table(lines: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: [clean_station(s) for s in stations] for name, stations in lines.items()}


def _lines_with(table: dict[str, list[str]], *keys: str) -> list[str]:
    """Line names (table order) whose stations include all `keys`."""
    return [name for name, stops in table.items() if all(k in stops for k in keys)]


def _endpoints_match(sections: list[Section], station_1: str, station_2: str) -> bool:
    return (stop_key(sections[0].departure) == clean_station(station_1)
            and stop_key(sections[-1].arrival) == clean_station(station_2))


def planning_accuracy(sections, lines, station_1, station_2) -> bool:
    """acc = 1 iff endpoints match, every route is a table line holding its
    departure and arrival (membership only), and arrival_i == departure_{i+1}."""
    if not sections or not _endpoints_match(sections, station_1, station_2):
        return False
    table = _clean_table(lines)
    for i, sec in enumerate(sections):
        stops = table.get(canonical_line(sec.route))
        dep, arr = stop_key(sec.departure), stop_key(sec.arrival)
        if stops is None or dep not in stops or arr not in stops:
            return False
        if i < len(sections) - 1 and arr != stop_key(sections[i + 1].departure):
            return False
    return True


def planning_detail(sections, lines, station_1, station_2, transfer_count, penalty="paper") -> float:
    """D_plan: +2 endpoints; per section i (0-based): -5 if i+1 > limit,
    +4 (T=0, direct line) or +3 (T>0) for a table line, +1 for a valid
    transfer with i+1 <= T; D = min(D, 10).

    limit = T+1 for penalty="paper", T for "released" (its off-by-one).
    The +4 goes to any table line holding both endpoints, in both modes: the
    released loop's break ends it only on a match, so a section riding a
    second direct line is credited too.
    """
    if penalty not in PENALTY_MODES:
        raise ValueError(f"detail_penalty must be one of {PENALTY_MODES}, got {penalty!r}")
    transfers = _transfers(transfer_count)
    if not sections or not _endpoints_match(sections, station_1, station_2):
        return 0.0
    table = _clean_table(lines)
    direct = _lines_with(table, clean_station(station_1), clean_station(station_2))
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
        dep, arr = stop_key(sec.departure), stop_key(sec.arrival)
        on_line = dep in table[route] and arr in table[route]
        if (on_line and i < len(sections) - 1 and i + 1 <= transfers
                and arr == stop_key(sections[i + 1].departure)):
            detail += TRANSFER_BONUS
    return min(detail, DETAIL_CAP)


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
        key = stop_key(stop)
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
          counting1_detail_enabled: bool = False, unwrap_text: bool = True, answer_format: str = "boxed") -> dict:
    """Score one response: r = W · (format_weight·F + 10·acc + 0.5·D).

    answer_format "boxed": the answer is the last boxed{...} (answer-phrase fallback); F (waypoint's format
    term): TorF/Counting -> 1 if a balanced boxed{...} exists and, cleaned like the answer, lies in the type's
    domain (yes/no; an integer; one letter a-d); planning -> 1 if a route section parses.
    answer_format "tags" (R1 / GRPO-CARE): the answer is the <answer> content (its boxed{...} if it has one,
    else the content cleaned like a box; planning: sections parsed from it); F = 1 iff the whole response is
    <think>...</think><answer>...</answer> AND the answer is in the domain as above. No <answer> -> all 0,
    with no boxed fallback: the paper's format reward requires the tags.
    D: planning_detail if a section parses; counting1_detail if enabled (Stops list anywhere in the response).
    unwrap_text: read \\text{X} as X (False: released, which reads "{x}").
    Also returned: accuracy_reward = W·10·acc; consistent (`rewards.consistency`, reasoning vs answer);
    answer_class = canonical_answer(answer) for an in-domain answer, else "" (no answer); computed here
    because SymPy may only run in the reward sandbox. answer_raw = the extracted answer string itself (no
    canonical form, any domain), None when nothing was extracted: COPO's released exact-string classes.
    A broken response scores 0s; a malformed row raises RowError.
    """
    if detail_penalty not in PENALTY_MODES:
        raise ValueError(f"detail_penalty must be one of {PENALTY_MODES}, got {detail_penalty!r}")
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    qtype = normalize_type(_field(row, "type"))
    transfers = row.get("question_transfer_count") if isinstance(row, dict) else None
    weight = difficulty_weight(qtype, _field(row, "difficulty_city"), transfers)
    text = response if isinstance(response, str) else ""
    if qtype == "planning":
        fmt, acc, detail, answer = _score_planning(text, row, detail_penalty, answer_format)
    else:
        fmt, acc, detail, answer = _score_choice(qtype, text, row, counting1_detail_enabled, unwrap_text,
                                                 answer_format)
    total = weight * (format_weight * fmt + CORRECT * acc + DETAIL_WEIGHT * detail)
    return {"format": fmt, "accuracy": acc, "detail": detail, "weight": weight, "total": total,
            "answer": answer, "accuracy_reward": weight * CORRECT * acc,
            "consistent": consistency(_reasoning(text, qtype, answer_format), answer, qtype),
            "answer_class": _answer_class(qtype, answer), "answer_raw": _answer_raw(qtype, text, answer, answer_format)}


def _answer_raw(qtype: str, text: str, answer: str, answer_format: str) -> str | None:
    """The extracted answer as the scorer read it (cleaned like `answer`, not canonicalised), or None when no
    answer was extracted: no route section parses (planning), no <answer> tag (tags), no box and no answer
    phrase (boxed: the whole response would be "read"), or the extraction is empty."""
    if not answer:
        return None
    if qtype != "planning" and answer_format == "boxed" and not has_answer_marker(text):
        return None
    return answer


def _answer_class(qtype: str, answer: str) -> str:
    """COPO's answer-equivalence class: canonical_answer of an answer in the type's domain; anything else
    (no box, junk text) is the one class "" (no answer), so G unreadable samples count as one outcome,
    not as G distinct answers of maximal entropy."""
    if qtype != "planning" and not _in_domain(qtype, answer):
        return ""
    return canonical_answer(answer)


def _tag_content(text: str) -> str | None:
    """The <answer> content (to the end of text if never closed), or None without an <answer> tag."""
    if ANSWER_OPEN not in text:
        return None
    start, end = answer_char_span(text)
    return text[start:end]


def _reasoning(text: str, qtype: str, answer_format: str) -> str | None:
    """The reasoning before a separable final answer, or None (consistency is then 0).

    Without an answer marker there is nothing to separate: the phrase fallback's answer would be found in the
    "reasoning" itself. Boxed planning has no marker either (the route is the whole response)."""
    if answer_format == "tags":
        return split_reasoning(text)[0] if ANSWER_OPEN in text else None
    if qtype == "planning" or boxed_content(text) is None:
        return None
    return split_reasoning(text)[0]


def _table(row: dict) -> dict[str, list[str]]:
    try:
        return load_line_table(_field(row, "json"))
    except RowError as exc:
        raise RowError(f"row field 'json': {exc}") from exc


def _score_planning(text: str, row: dict, penalty: str, answer_format: str) -> tuple[float, float, float, str]:
    s1, s2 = _station(row, "station_1"), _station(row, "station_2")
    transfers = _transfers(row.get("question_transfer_count"))
    lines = _table(row)
    if answer_format == "tags":
        sections = parse_route_sections(_tag_content(text))   # None (no tag) parses to []
        wrapped = _TAGS_FORMAT.match(text) is not None
    else:
        sections, wrapped = parse_route_sections(text), True
    if not sections:
        return 0.0, 0.0, 0.0, ""
    acc = float(planning_accuracy(sections, lines, s1, s2))
    detail = planning_detail(sections, lines, s1, s2, transfers, penalty)
    return float(wrapped), acc, detail, route_string(sections)


def _choice_answer(text: str, unwrap_text: bool, answer_format: str) -> tuple[str, str | None]:
    """(final answer, the cleaned string the format term checks, or None when the format already fails)."""
    if answer_format == "boxed":
        boxed = boxed_content(text)
        return extract_final_answer(text, unwrap_text), None if boxed is None else clean_answer(boxed, unwrap_text)
    content = _tag_content(text)
    if content is None:
        return "", None
    answer = extract_final_answer(content, unwrap_text) if "boxed{" in content else clean_answer(content, unwrap_text)
    return answer, answer if _TAGS_FORMAT.match(text) else None


def _score_choice(qtype: str, text: str, row: dict, with_detail: bool, unwrap_text: bool,
                  answer_format: str) -> tuple[float, float, float, str]:
    truth = _as_int(_field(row, "answer"), "answer")
    detail = 0.0
    if qtype == "counting1" and with_detail:
        # Validate the row before looking at the response.
        s1, s2, lines = _station(row, "station_1"), _station(row, "station_2"), _table(row)
        detail = counting1_detail(extract_stops(text), lines, s1, s2)
    answer, checked = _choice_answer(text, unwrap_text, answer_format)
    fmt = float(checked is not None and _in_domain(qtype, checked))
    acc = float(_choice_accuracy(qtype, answer, truth))
    return fmt, acc, detail, answer
