"""Math task rows (data.math_problems): synthetic problems re-solved independently, PRM-checkable reference
steps, the MATH-format loader (jsonl / json / parquet, malformed records) and the level -> difficulty map."""

import ast
import json
import re
from fractions import Fraction

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.math_problems import (
    load_math_rows, math_difficulty, math_rows_from_records, synthetic_math_problems, write_math_jsonl,
)
from data.prompts import TASK_INSTRUCTIONS, prompt_text
from data.schema import ROW_FIELDS
from rewards.math_answer import math_ground_truth, score
from rewards.prm.check import verify_step

ROWS = synthetic_math_problems(48, seed=7)


# ------------------------------------------------------------ an independent solver (Fractions, no eval)
def _value(node, x):
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    if isinstance(node, ast.Name):
        return x
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, x)
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** int(b)}
    return ops[type(node.op)](_value(node.left, x), _value(node.right, x))


def evaluate(text: str, x: Fraction = Fraction(0)) -> Fraction:
    """Our own generated text: '^' is power, '3x' is 3*x."""
    text = re.sub(r"(\d)x", r"\1*x", text.replace("^", "**"))
    return _value(ast.parse(text, mode="eval").body, x)


def solve(question: str) -> Fraction:
    compute = re.fullmatch(r"Compute (.+)\.", question)
    if compute:
        return evaluate(compute.group(1))
    lhs, rhs = re.fullmatch(r"Solve for x: (.+) = (.+)\.", question).groups()
    f0 = evaluate(lhs, Fraction(0)) - evaluate(rhs, Fraction(0))
    f1 = evaluate(lhs, Fraction(1)) - evaluate(rhs, Fraction(1))
    return -f0 / (f1 - f0)                     # f is linear: f(x) = f0 + (f1 - f0) x


def test_solver_on_hand_examples():
    assert solve("Compute 3 * (4 + 5) - 6.") == 21
    assert solve("Compute 2/3 + 5/6.") == Fraction(3, 2)
    assert solve("Compute 2^5 - 3^2.") == 23
    assert solve("Solve for x: 3x + 4 = 19.") == 5
    assert solve("Solve for x: 7x + 14 = x + 43.") == Fraction(29, 6)


# ------------------------------------------------------------ synthetic problems
def test_deterministic_and_prefix_stable():
    assert synthetic_math_problems(48, seed=7) == ROWS
    assert synthetic_math_problems(10, seed=7) == ROWS[:10]
    assert [r["question"] for r in synthetic_math_problems(48, seed=8)] != [r["question"] for r in ROWS]


def test_row_contract():
    for i, row in enumerate(ROWS):
        assert set(row) == set(ROW_FIELDS)
        assert row["id"] == f"smath-7-{i}"
        assert (row["type"], row["answer"], row["source"]) == ("math", -1, "synthetic_math")
        assert row["city_line_count"] == row["city_transfer_count"] == row["question_transfer_count"] == 0
        assert row["map_text"] == "" and row["country"] == "" and row["options"] == []


def test_kinds_round_robin_and_levels_cycle():
    starts = [r["question"].split()[0] for r in ROWS[:4]]
    assert starts == ["Compute", "Solve", "Compute", "Compute"]      # arithmetic, linear, fraction, power
    assert "/" in ROWS[2]["question"] and "^" in ROWS[3]["question"]
    levels = [r["difficulty_city"] for r in ROWS[:13]]
    assert levels == ["easy"] * 4 + ["middle"] * 4 + ["hard"] * 4 + ["easy"]


def test_one_kind_only():
    rows = synthetic_math_problems(6, seed=1, kinds=("power",))
    assert all("^" in r["question"] for r in rows)
    assert [r["difficulty_city"] for r in rows] == ["easy", "middle", "hard"] * 2
    with pytest.raises(ValueError):
        synthetic_math_problems(3, kinds=("geometry",))


def test_every_boxed_answer_is_right():
    for row in ROWS:
        assert Fraction(math_ground_truth(row)) == solve(row["question"]), row["question"]


def test_every_reference_step_is_verified_by_the_tool():
    for row in ROWS:
        steps = row["reference_response"].split("\n\n")
        assert steps[-1] == f"The answer is \\boxed{{{math_ground_truth(row)}}}."
        for step in steps[:-1]:
            assert "=" in step
            assert verify_step(step).verdict == "verified", step


def test_reference_scores_full_marks_both_ways():
    for row in ROWS:
        out = score(row["reference_response"], row)
        assert (out["accuracy"], out["format"], out["consistent"], out["total"]) == (1.0, 1.0, 1.0, 2.0)
        tagged = f"<think>{row['reference_response']}</think><answer>{math_ground_truth(row)}</answer>"
        assert score(tagged, row, answer_format="tags")["accuracy"] == 1.0


def test_prompt_text_for_math():
    row = ROWS[0]
    assert prompt_text(row) == TASK_INSTRUCTIONS["math"]["boxed"] + "\n\n" + row["question"]
    assert prompt_text(row, answer_format="tags").startswith(TASK_INSTRUCTIONS["math"]["tags"])
    assert "Metro lines" not in prompt_text(row)


# ------------------------------------------------------------ level -> difficulty
@pytest.mark.parametrize("level, difficulty", [
    ("Level 1", "easy"), ("Level 2", "easy"), ("level 3", "middle"), ("Level 4", "hard"), (5, "hard"),
    ("3", "middle"), (2.0, "easy"), ("Level ?", "middle"), (None, "middle"), (9, "middle"), (True, "middle"),
])
def test_level_to_difficulty(level, difficulty):
    assert math_difficulty(level) == difficulty


# ------------------------------------------------------------ MATH-format records
GOOD = {"problem": "What is $1+1$?", "solution": "$1+1=2$, so the answer is $\\boxed{2}$.", "level": "Level 4",
        "type": "Prealgebra", "unique_id": "test/prealgebra/1.json"}


def test_records_good_and_malformed_counted():
    records = [GOOD, "not a dict", {"solution": "\\boxed{1}"}, {"problem": "  ", "solution": "\\boxed{1}"},
               {"problem": "Q", "solution": "no box here"}, {"problem": "Q", "solution": "\\boxed{}"},
               {"problem": "Q2", "solution": "\\boxed{\\frac{1}{2}}", "id": 17}]
    result = math_rows_from_records(records)
    assert [r["id"] for r in result.rows] == ["test/prealgebra/1.json", "17"]
    first = result.rows[0]
    assert (first["question"], first["difficulty_city"], first["source"]) == ("What is $1+1$?", "hard", "math")
    assert math_ground_truth(first) == "2" and math_ground_truth(result.rows[1]) == "\\frac{1}{2}"
    assert [i for i, _ in result.errors] == [1, 2, 3, 4, 5]
    reasons = [reason.split(":")[0] for _, reason in result.errors]
    assert reasons == ["not a record", "missing problem", "missing problem", "no boxed answer", "no boxed answer"]
    assert "2 rows loaded, 5 malformed" in result.summary()
    assert math_rows_from_records([{"problem": "Q", "solution": "\\boxed{3}"}], source="m").rows[0]["id"] == "m-0"


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "sub" / "math.jsonl"
    write_math_jsonl(ROWS, path)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"problem", "solution", "level", "id"} and first["level"] == "Level 1"
    result = load_math_rows(path, source="synthetic_math")
    assert result.errors == [] and result.rows == ROWS and result.path == str(path)


def test_jsonl_bad_lines_are_errors(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n\n[1, 2]\n" + json.dumps(GOOD) + "\n", encoding="utf-8")
    result = load_math_rows(path)
    assert len(result.rows) == 2
    assert [(i, reason.split(":")[0]) for i, reason in result.errors] == [(1, "bad json line"), (2, "not a record")]
    assert "line 2" in result.errors[0][1]


@pytest.mark.parametrize("key", [None, "data", "rows", "train"])
def test_json_layouts(tmp_path, key):
    path = tmp_path / "m.json"
    payload = [GOOD, {"problem": "Q"}]
    path.write_text(json.dumps(payload if key is None else {key: payload}), encoding="utf-8")
    result = load_math_rows(path)
    assert [r["id"] for r in result.rows] == [GOOD["unique_id"]]
    assert result.errors == [(1, "missing solution: field 'solution' must be non-empty text, got NoneType")]


def test_parquet(tmp_path):
    path = tmp_path / "m.parquet"
    records = [dict(GOOD, level="Level 1"), {"problem": "P", "solution": "x = \\boxed{5}", "level": None,
                                             "type": "Algebra", "unique_id": None}]
    pq.write_table(pa.Table.from_pylist(records), str(path))
    result = load_math_rows(path)
    assert result.errors == []
    assert [(r["id"], r["difficulty_city"]) for r in result.rows] == [(GOOD["unique_id"], "easy"), ("math-1", "middle")]


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_math_rows(tmp_path / "none.jsonl")
    (tmp_path / "m.csv").write_text("problem,solution\n", encoding="utf-8")
    with pytest.raises(ValueError):
        load_math_rows(tmp_path / "m.csv")
