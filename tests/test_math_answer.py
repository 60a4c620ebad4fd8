"""Math reward (rewards.math_answer): hand-computed scores, equivalent forms, tags, hostile answers."""

import time

import pytest

from data.math_problems import math_row
from rewards.errors import RowError
from rewards.math_answer import answer_class, last_equation_result, math_ground_truth, score

REF = "2/3 + 5/6 = 4/6 + 5/6 = 9/6 = 3/2\n\nThe answer is \\boxed{\\frac{3}{2}}."
ROW = math_row("m-1", "Compute 2/3 + 5/6.", REF, "easy", "math")
INT_ROW = math_row("m-2", "Solve for x: 3x + 4 = 19.", "3x = 15\n\nx = 5\n\n\\boxed{5}", "easy", "math")
KEYS = {"format", "accuracy", "accuracy_reward", "detail", "weight", "consistent", "total", "answer",
        "answer_class", "answer_raw"}


def test_ground_truth_is_last_box():
    assert math_ground_truth(ROW) == "\\frac{3}{2}"
    row = math_row("m", "Q", "first \\boxed{1}, then \\boxed{x^{2}} wins", "easy", "math")
    assert math_ground_truth(row) == "x^{2}"


@pytest.mark.parametrize("reference", ["no box", "\\boxed{ }", "\\boxed{1", None])
def test_ground_truth_missing_raises(reference):
    row = dict(ROW, reference_response=reference)
    with pytest.raises(RowError, match="m-1"):
        math_ground_truth(row)
    with pytest.raises(RowError):
        score("\\boxed{3/2}", row)             # the row is checked even for a good response


def test_correct_answer():
    out = score("2/3 + 5/6 = 9/6 = 3/2\n\nSo \\boxed{3/2}.", ROW)
    assert set(out) == KEYS
    assert (out["format"], out["accuracy"], out["accuracy_reward"], out["total"]) == (1.0, 1.0, 1.0, 2.0)
    assert (out["detail"], out["weight"], out["consistent"]) == (0.0, 1.0, 1.0)
    assert out["answer"] == "3/2" and out["answer_class"] == "3/2"


def test_wrong_answer():
    out = score("2/3 + 5/6 = 7/9\n\n\\boxed{7/9}", ROW)
    assert (out["format"], out["accuracy"], out["total"]) == (1.0, 0.0, 1.0)
    assert out["consistent"] == 1.0                   # wrong, but the answer is what the reasoning derived
    assert score("\\boxed{7/9}", ROW, format_weight=0.5)["total"] == 0.5


@pytest.mark.parametrize("answer", ["3/2", "\\frac{3}{2}", "\\dfrac{3}{2}", " 3/2 ", "1.5", "x = 3/2", "6/4",
                                    "\\left(\\frac{3}{2}\\right)", "3 / 2"])
def test_equivalent_forms(answer):
    out = score(f"\\boxed{{{answer}}}", ROW)
    assert out["accuracy"] == 1.0, answer
    assert out["answer_class"] == "3/2"


def test_leading_variable_is_dropped_both_sides():
    assert score("\\boxed{x = 5}", INT_ROW)["answer"] == "5"
    assert score("\\boxed{x=5}", INT_ROW)["accuracy"] == 1.0
    line = math_row("m-3", "Find the line.", "\\boxed{y = 2x + 1}", "hard", "math")
    assert score("\\boxed{1 + 2x}", line)["accuracy"] == 1.0
    assert score("\\boxed{y=2x+1}", line)["answer_class"] == "2*x + 1"


def test_no_box():
    out = score("2/3 + 5/6 = 3/2", ROW)                # a bare trailing equation is not an answer
    assert (out["format"], out["accuracy"], out["total"], out["answer"], out["answer_class"]) == (0, 0, 0, "", "")
    phrase = score("We add them. The answer is 3/2", ROW)  # answer phrase: accuracy, but no format credit
    assert (phrase["format"], phrase["accuracy"], phrase["total"]) == (0.0, 1.0, 1.0)
    assert score("\\boxed{}", ROW)["format"] == 0.0
    assert score("", ROW)["total"] == 0.0 and score(None, ROW)["total"] == 0.0


def test_tags_format():
    good = "<think>2/3 + 5/6 = 3/2</think><answer>3/2</answer>"
    out = score(good, ROW, answer_format="tags")
    assert (out["format"], out["accuracy"], out["consistent"], out["total"]) == (1.0, 1.0, 1.0, 2.0)
    boxed_inside = score("<think>t</think> <answer>\\boxed{\\frac{3}{2}}</answer>", ROW, answer_format="tags")
    assert (boxed_inside["format"], boxed_inside["accuracy"]) == (1.0, 1.0)
    loose = score("Sure. <answer>3/2</answer>", ROW, answer_format="tags")   # no <think>: format 0
    assert (loose["format"], loose["accuracy"]) == (0.0, 1.0)
    no_tags = score("\\boxed{3/2}", ROW, answer_format="tags")               # no box fallback
    assert (no_tags["format"], no_tags["accuracy"], no_tags["answer"]) == (0.0, 0.0, "")
    with pytest.raises(ValueError):
        score(good, ROW, answer_format="xml")


def test_consistency():
    assert score("2/3 + 5/6 = 9/6\n\n\\boxed{3/2}", ROW)["consistent"] == 1.0      # 9/6 equals 3/2
    assert score("2/3 + 5/6 = 7/6\n\n\\boxed{3/2}", ROW)["consistent"] == 0.0      # answer not derived
    assert score("no equations here \\boxed{3/2}", ROW)["consistent"] == 0.0
    assert score("<think>a = 3/2</think><answer>1.5</answer>", ROW, answer_format="tags")["consistent"] == 1.0
    assert last_equation_result("4 + 5 = 9\n\nso 27 - 6 = 21 apples\nx <= 3") == "21"
    assert last_equation_result("no equals") is None


def test_map_options_are_ignored():
    out = score("\\boxed{3/2}", ROW, detail_penalty="released", counting1_detail_enabled=True, unwrap_text=False)
    assert out["accuracy"] == 1.0


@pytest.mark.parametrize("hostile", [
    "__import__('os').system('echo hi')", "10**10**10", "9^9^9^9", "999999^1000", "(" * 5000 + "1" + ")" * 5000,
    "1" * 100_000, "x" * 200, "1/0", "0^(-1)", "factorial(10000)", "2^(10^6)", "\\frac{1}{0}", "sqrt(-1)",
])
def test_hostile_answers_score_zero_quickly(hostile):
    began = time.monotonic()
    out = score(f"1 = {hostile}\n\\boxed{{{hostile}}}", INT_ROW)
    tagged = score(f"<think>x</think><answer>{hostile}</answer>", INT_ROW, answer_format="tags")
    assert time.monotonic() - began < 2.0
    assert out["accuracy"] == 0.0 and tagged["accuracy"] == 0.0
    assert isinstance(out["answer_class"], str) and out["answer_class"] != ""


def test_answer_raw_keeps_the_extracted_string():
    # the class folds equivalent forms together; the raw string (COPO's released classes) does not
    frac, dec = score("so \\boxed{\\frac{3}{2}}", ROW), score("\\boxed{1.5}", ROW)
    assert (frac["answer_class"], frac["answer_raw"]) == ("3/2", "\\frac{3}{2}")
    assert (dec["answer_class"], dec["answer_raw"]) == ("3/2", "1.5")
    assert score("The answer is 3/2", ROW)["answer_raw"] == "3/2"
    assert score("<think>t</think><answer>3/2</answer>", ROW, answer_format="tags")["answer_raw"] == "3/2"
    nothing = score("I do not know", ROW)
    assert (nothing["answer_class"], nothing["answer_raw"]) == ("", None)


def test_answer_class():
    assert answer_class("3/2") == answer_class("\\frac{3}{2}") == answer_class(" 3/2 ") == answer_class("1.5")
    assert answer_class("2x+1") == answer_class("1 + 2x") == "2*x + 1"
    assert answer_class("3/2") != answer_class("2/3")
    assert answer_class(" Blue ") == "blue"                # unparseable: stripped, lower-cased string
    assert answer_class("") == "" and answer_class("   ") == ""
    assert answer_class("999999^1000") == "999999^1000"    # parses, but too long to print: string class
