"""MATH-style problems as task rows of type "math": a deterministic synthetic generator whose reference
solutions the PRM tool can check step by step, and a loader for MATH-format records.

A math row has every `data.schema.ROW_FIELDS` key: question = the problem, answer = -1, type = "math",
reference_response = the worked solution whose LAST \\boxed{...} is the ground truth
(`rewards.math_answer.math_ground_truth`), the map-only counts 0, the rest from `DEFAULTS`.
"""
from __future__ import annotations

import json
import math
import random
import re
from fractions import Fraction
from pathlib import Path

from data.dataset import LoadResult, hf_records, is_hf_source, read_records
from data.schema import DEFAULTS, ROW_FIELDS
from rewards.answer import boxed_content
from rewards.errors import RowError

SYNTHETIC_KINDS = ("arithmetic", "linear", "fraction", "power")
SYNTHETIC_DIFFICULTY = {1: "easy", 2: "middle", 3: "hard"}
# MATH levels 1-5; a missing or unreadable level ("Level ?" occurs in MATH) is read as middle.
LEVEL_DIFFICULTY = {1: "easy", 2: "easy", 3: "middle", 4: "hard", 5: "hard"}
UNKNOWN_LEVEL_DIFFICULTY = "middle"
# The level `write_math_jsonl` writes: one that reads back to the same difficulty.
DIFFICULTY_LEVEL = {"easy": 1, "middle": 3, "hard": 5}
_LEVEL = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", flags=re.IGNORECASE)
_PREC = {"+": 1, "-": 1, "*": 2}
# Largest exponent per base, so powers stay small enough to compute by hand.
_MAX_EXPONENT = {2: 6, 3: 4, 4: 3, 5: 3}


def math_row(row_id: str, question: str, solution: str, difficulty: str, source: str) -> dict:
    """A row in the shared schema for one math problem."""
    row = {name: DEFAULTS.get(name) for name in ROW_FIELDS}
    row.update(id=row_id, question=question, answer=-1, type="math", difficulty_city=difficulty,
               city_line_count=0, city_transfer_count=0, question_transfer_count=0, options=[],
               reference_response=solution, source=source)
    return row


# ------------------------------------------------------------------ synthetic problems
def _x(coef: int) -> str:
    return "x" if coef == 1 else f"{coef}x"


def _arithmetic(rng: random.Random, level: int) -> tuple[str, list[str], Fraction]:
    """level + 1 operations on positive integers, minimal parentheses; one step per operation."""
    value = rng.randint(2, 12)
    text, top, steps = str(value), None, []
    for _ in range(level + 1):
        op, left = rng.choice("+-*"), rng.random() < 0.5
        if op == "-" and left and value <= 1:
            op = "+"
        c = rng.randint(2, 9) if op == "*" else rng.randint(1, 20)
        if op == "-":       # keep every intermediate result positive
            c = rng.randint(1, value - 1) if left else value + rng.randint(1, 20)
        new = value + c if op == "+" else value * c if op == "*" else (value - c if left else c - value)
        wrap = top is not None and (_PREC[top] < _PREC[op] or (not left and op == "-" and _PREC[top] == 1))
        inner = f"({text})" if wrap else text
        text = f"{inner} {op} {c}" if left else f"{c} {op} {inner}"
        steps.append(f"{value} {op} {c} = {new}" if left else f"{c} {op} {value} = {new}")
        value, top = new, op
    return f"Compute {text}.", steps, Fraction(value)


def _linear(rng: random.Random, level: int) -> tuple[str, list[str], Fraction]:
    """Level 1: ax + b = c, integer x; 2: a fractional x; 3: x on both sides."""
    a = rng.randint(2, 9)
    if level < 3:
        x = Fraction(rng.randint(1, 12)) if level == 1 else Fraction(rng.randint(1, 30), a)
        while level == 2 and x.denominator == 1:
            x = Fraction(rng.randint(1, 30), a)
        b = rng.choice([-1, 1]) * rng.randint(1, 20)
        c = a * x + b
        move = f"Subtract {b} from both sides: {_x(a)} = {c} - {b}" if b > 0 else \
            f"Add {-b} to both sides: {_x(a)} = {c} + {-b}"
        sign = "+" if b > 0 else "-"
        question = f"Solve for x: {_x(a)} {sign} {abs(b)} = {c}."
        steps = [f"{move} = {c - b}", f"Divide both sides by {a}: x = {c - b} / {a} = {x}"]
        return question, steps, x
    d = rng.randint(1, a - 1)
    b, k = rng.randint(1, 20), rng.randint(1, 30)
    e, x = b + k, Fraction(k, a - d)
    question = f"Solve for x: {_x(a)} + {b} = {_x(d)} + {e}."
    steps = [f"Collect the x terms on the left: {_x(a)} - {_x(d)} = ({a} - {d})x = {_x(a - d)}",
             f"Collect the constants on the right: {_x(a - d)} = {e} - {b} = {k}"]
    if a - d > 1:
        steps.append(f"Divide both sides by {a - d}: x = {k} / {a - d} = {x}")
    return question, steps, x


def _fraction(rng: random.Random) -> Fraction:
    """A non-integer fraction p/q in lowest terms, q <= 9."""
    while True:
        f = Fraction(rng.randint(1, 17), rng.randint(2, 9))
        if f.denominator > 1:
            return f


def _add_step(x: Fraction, op: str, y: Fraction) -> tuple[str, Fraction]:
    """'x op y = (common denominator) = sum [= reduced]' and its value."""
    lcd = math.lcm(x.denominator, y.denominator)
    xn, yn = x.numerator * lcd // x.denominator, y.numerator * lcd // y.denominator
    total = xn + yn if op == "+" else xn - yn
    result = x + y if op == "+" else x - y
    parts = [f"{x} {op} {y}"]
    if lcd != x.denominator or lcd != y.denominator:
        parts.append(f"{xn}/{lcd} {op} {yn}/{lcd}")
    parts.append(f"{total}/{lcd}")
    if str(result) != f"{total}/{lcd}":
        parts.append(str(result))
    return " = ".join(parts), result


def _fraction_problem(rng: random.Random, level: int) -> tuple[str, list[str], Fraction]:
    """Level 1: p/q ± r/s; 2: three fractions; 3: (p/q) * (r/s) ± t/u."""
    steps = []
    if level == 3:
        x, y = _fraction(rng), _fraction(rng)
        value = x * y
        raw = f"{x.numerator * y.numerator}/{x.denominator * y.denominator}"
        steps.append(f"({x}) * ({y}) = {raw}" + ("" if raw == str(value) else f" = {value}"))
        text, terms = f"({x}) * ({y})", 1
    else:
        value = _fraction(rng)
        text, terms = str(value), level
    for _ in range(terms):
        op, y = rng.choice("+-"), _fraction(rng)
        step, value = _add_step(value, op, y)
        steps.append(step)
        text += f" {op} {y}"
    return f"Compute {text}.", steps, value


def _power(rng: random.Random, level: int) -> tuple[str, list[str], Fraction]:
    """level + 1 powers b^e joined by + / -; one step per power, then one per operation."""
    terms = []
    for _ in range(level + 1):
        base = rng.randint(2, 9)
        terms.append((base, rng.randint(2, _MAX_EXPONENT.get(base, 3))))
    steps = [f"{b}^{e} = {b ** e}" for b, e in terms]
    value, text = terms[0][0] ** terms[0][1], f"{terms[0][0]}^{terms[0][1]}"
    for b, e in terms[1:]:
        op = rng.choice("+-") if value > b ** e else "+"   # keep the running value positive
        new = value + b ** e if op == "+" else value - b ** e
        steps.append(f"{value} {op} {b ** e} = {new}")
        value, text = new, f"{text} {op} {b}^{e}"
    return f"Compute {text}.", steps, Fraction(value)


_GENERATORS = {"arithmetic": _arithmetic, "linear": _linear, "fraction": _fraction_problem, "power": _power}


def synthetic_math_problems(n: int, seed: int = 0, kinds: tuple = SYNTHETIC_KINDS) -> list[dict]:
    """n math rows, kinds round-robin and levels 1/2/3 cycling per round (easy/middle/hard); deterministic in
    seed (a prefix of a longer run is the shorter run). Each reference solution is steps separated by blank
    lines, each an equation the PRM tool verifies, then "The answer is \\boxed{answer}."."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = [k for k in kinds if k not in _GENERATORS]
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {SYNTHETIC_KINDS}, got {kinds!r}")
    rng, rows = random.Random(seed), []
    for i in range(n):
        level = (i // len(kinds)) % 3 + 1
        question, steps, answer = _GENERATORS[kinds[i % len(kinds)]](rng, level)
        solution = "\n\n".join([*steps, f"The answer is \\boxed{{{answer}}}."])
        rows.append(math_row(f"smath-{seed}-{i}", question, solution, SYNTHETIC_DIFFICULTY[level],
                             "synthetic_math"))
    return rows


# ------------------------------------------------------------------ MATH-format records
def math_difficulty(level) -> str:
    """MATH level ("Level 3", "3", 3) -> easy (1-2) / middle (3) / hard (4-5); anything else -> middle."""
    if isinstance(level, bool):
        return UNKNOWN_LEVEL_DIFFICULTY
    if isinstance(level, float) and level.is_integer():
        level = int(level)
    if isinstance(level, str) and (match := _LEVEL.match(level)):
        level = int(match.group(1))
    return LEVEL_DIFFICULTY.get(level, UNKNOWN_LEVEL_DIFFICULTY) if isinstance(level, int) \
        else UNKNOWN_LEVEL_DIFFICULTY


def _text_field(record: dict, name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"missing {name}: field {name!r} must be non-empty text, got {type(value).__name__}")
    return value


def math_row_from_record(record, index: int, source: str = "math") -> dict:
    """One MATH-format record (problem, solution with \\boxed{}, optional level / id / unique_id) as a row;
    RowError("reason: detail") when malformed."""
    if isinstance(record, RowError):          # an unreadable JSON line, from read_records
        raise record
    if not isinstance(record, dict):
        raise RowError(f"not a record: expected an object, got {type(record).__name__}")
    problem, solution = _text_field(record, "problem"), _text_field(record, "solution")
    box = boxed_content(solution)
    if box is None or not box.strip():
        raise RowError("no boxed answer: the solution has no non-empty \\boxed{...}")
    row_id = record.get("id") or record.get("unique_id") or f"{source}-{index}"
    return math_row(str(row_id), problem.strip(), solution, math_difficulty(record.get("level")), source)


def math_rows_from_records(records, source: str = "math") -> LoadResult:
    """Rows of MATH-format records; malformed ones are listed in errors as (index, reason), never raised."""
    result = LoadResult(rows=[])
    for index, record in enumerate(records):
        try:
            result.rows.append(math_row_from_record(record, index, source))
        except RowError as exc:
            result.errors.append((index, str(exc)))
    return result


def load_math_rows(path: str | Path, source: str = "math", split: str = "train") -> LoadResult:
    """Rows of a .jsonl, .json (a list, or an object with "data" / "rows" / "train") or .parquet file of
    MATH-format records, or of a `datasets` save_to_disk folder or hub id (`split`). An unreadable JSONL line
    is an error at its record index, not an exception."""
    if is_hf_source(path):
        records = hf_records(str(path), split)
    elif Path(path).is_file():
        records = read_records(Path(path))
    else:
        raise FileNotFoundError(f"no math data file, save_to_disk folder or hub dataset at {path}")
    result = math_rows_from_records(records, source)
    result.path = str(path)
    return result


def write_math_jsonl(rows: list[dict], path: str | Path) -> None:
    """Rows as MATH-format JSONL records (problem, solution, level, id), readable by `load_math_rows`; the level
    written is one that reads back to the row's difficulty (easy 1, middle 3, hard 5)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            record = {"problem": row["question"], "solution": row["reference_response"],
                      "level": f"Level {DIFFICULTY_LEVEL[row['difficulty_city']]}", "id": row["id"]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
