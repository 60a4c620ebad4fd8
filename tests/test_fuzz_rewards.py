"""Property-based fuzz of the reward and answer parsers: a model response is hostile text. Whatever it holds
(unbalanced braces, nested boxes, stray tags, huge numbers, control characters), scoring returns bounded numbers
and never raises; only a malformed *row* raises, and then a RowError that names the field."""
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rewards import map_vqa, math_answer
from rewards.answer import answer_char_span, extract_final_answer, extract_stops, split_reasoning
from rewards.errors import RowError
from rewards.prm.claims import extract_claims
from rewards.prm.score import generated_step_score
from rewards.prm.steps import MODES, split_steps
from rewards.prm.verify import ToolVerifier
from rewards.routes import parse_route_sections
from tests.map_rows import LINES, choice_row, plan_row

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
# Pieces a model (or an attacker) writes around an answer, glued in any order with arbitrary text between.
FRAGMENTS = ["\\boxed{", "}", "{", "\\boxed{yes}", "\\boxed{no}", "\\boxed{\\boxed{3}}", "\\text{", "<think>",
             "</think>", "<answer>", "</answer>", "The answer is", "Answer:", "Route Name: Line 1",
             "Departure Stop: Alpha Station", "Arrival Stop: Delta Station", "--", "Stops: [Bravo, ", "]",
             "Step 1:", "Step 2:", "\n\n", "\n", "=", "x = ", "≈", "\\frac{", "sqrt(", "(" * 50, ")" * 50,
             "9" * 5000, "1e999999", "**", "^", "__import__('os')", "\x00", "\u2028", "²", "-0", " ", "A", "(B)"]
responses = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=14).map("".join)
ROWS = [choice_row("torf1", 1), choice_row("torf2", 0, city="hard"), choice_row("counting2", 3),
        choice_row("counting3", 4),
        {**choice_row("counting1", 2, city="middle"), "station_1": "Alpha Station", "station_2": "Delta Station",
         "json": LINES},
        plan_row("Alpha Station", "Delta Station", 0), plan_row("Echo Station", "India Station", 1, city="hard")]
MATH_ROW = {"id": "m0", "type": "math", "question": "?", "reference_response": "so \\boxed{\\frac{3}{2}}"}
SCORE_KEYS = {"format", "accuracy", "detail", "weight", "total", "answer", "accuracy_reward", "consistent",
              "answer_class", "answer_raw"}


def _check_map_score(out: dict) -> None:
    assert set(out) == SCORE_KEYS
    assert out["format"] in (0.0, 1.0) and out["accuracy"] in (0.0, 1.0)
    assert all(math.isfinite(out[k]) for k in ("detail", "weight", "total", "accuracy_reward"))
    assert out["detail"] <= map_vqa.DETAIL_CAP
    assert out["total"] == pytest.approx(out["weight"] * (out["format"] + map_vqa.CORRECT * out["accuracy"]
                                                          + map_vqa.DETAIL_WEIGHT * out["detail"]))
    assert out["accuracy_reward"] == pytest.approx(out["weight"] * map_vqa.CORRECT * out["accuracy"])
    assert isinstance(out["answer"], str) and isinstance(out["answer_class"], str)


@FUZZ
@given(response=responses, which=st.integers(0, len(ROWS) - 1), fmt=st.sampled_from(map_vqa.ANSWER_FORMATS),
       penalty=st.sampled_from(map_vqa.PENALTY_MODES), counting1=st.booleans())
@example(response="\\boxed{" * 3000, which=0, fmt="boxed", penalty="paper", counting1=False)
@example(response="Route Name: " + "Line 1 " * 2000, which=5, fmt="boxed", penalty="paper", counting1=True)
@example(response="<think>" * 500 + "<answer>\\boxed{yes}</answer>", which=0, fmt="tags", penalty="paper",
         counting1=False)
def test_any_response_to_a_map_row_scores_within_the_reward_formula(response, which, fmt, penalty, counting1):
    out = map_vqa.score(response, ROWS[which], detail_penalty=penalty, answer_format=fmt,
                        counting1_detail_enabled=counting1)
    _check_map_score(out)
    if out["accuracy"] == 1.0:                      # a right answer was extracted from the text itself
        assert out["answer"] != "" or ROWS[which]["type"] == "planning"


def test_the_fuzz_formula_check_can_fail():
    """The properties above are not vacuous: a right answer scores the whole formula."""
    out = map_vqa.score("yes, so \\boxed{yes}", choice_row("torf1", 1))
    assert (out["format"], out["accuracy"], out["total"]) == (1.0, 1.0, 11.0)


@FUZZ
@given(response=responses, fmt=st.sampled_from(math_answer.ANSWER_FORMATS))
@example(response="\\boxed{" + "9" * 5000 + "}", fmt="boxed")          # an integer past str()'s digit limit
@example(response="\\boxed{" + "(" * 400 + "3/2" + ")" * 400 + "}", fmt="boxed")
def test_any_response_to_a_math_row_scores_zero_or_one(response, fmt):
    out = math_answer.score(response, MATH_ROW, answer_format=fmt)
    assert set(out) == SCORE_KEYS
    assert out["format"] in (0.0, 1.0) and out["accuracy"] in (0.0, 1.0)
    assert out["total"] == out["format"] + out["accuracy"]
    assert out["accuracy"] == 0.0 or out["answer"] != ""


FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(), st.text(max_size=8),
                         st.lists(st.text(max_size=4), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                                   st.integers(), max_size=2))
MAP_FIELDS = ["type", "answer", "difficulty_city", "question_transfer_count", "station_1", "station_2", "json",
              "options"]


@FUZZ
@given(which=st.integers(0, len(ROWS) - 1), changes=st.dictionaries(st.sampled_from(MAP_FIELDS), FIELD_VALUES,
                                                                     min_size=1, max_size=3),
       response=st.sampled_from(["\\boxed{yes}", "\\boxed{3}", "\\boxed{B}", "Route Name: Line 1\n"
                                 "Departure Stop: Alpha Station\nArrival Stop: Delta Station"]))
@example(which=0, changes={"type": 7}, response="\\boxed{yes}")
@example(which=5, changes={"json": {"Line 1": 5}}, response="\\boxed{yes}")
@example(which=2, changes={"question_transfer_count": 10**30}, response="\\boxed{3}")
def test_a_malformed_map_row_is_scored_or_raises_a_row_error_naming_a_field(which, changes, response):
    row = {**ROWS[which], **changes}
    try:
        out = map_vqa.score(response, row)
    except RowError as exc:
        assert any(name in str(exc) for name in MAP_FIELDS + ["line table", "line"]), str(exc)
        return
    _check_map_score(out)


@FUZZ
@given(reference=FIELD_VALUES | st.text(max_size=20).map(lambda t: "\\boxed{" + t))
@example(reference="no box here")
def test_a_math_row_without_a_boxed_reference_raises_a_row_error_naming_it(reference):
    try:
        math_answer.score("\\boxed{1}", {"id": 1, "reference_response": reference})
    except RowError as exc:
        assert "reference_response" in str(exc)


@FUZZ
@given(text=responses)
def test_answer_helpers_return_spans_inside_the_text(text):
    span = answer_char_span(text)
    assert span is None or 0 <= span[0] <= span[1] <= len(text)
    reasoning, answer = split_reasoning(text)
    assert isinstance(reasoning, str) and (answer is None or isinstance(answer, str))
    assert isinstance(extract_final_answer(text), str)
    assert all(isinstance(s, str) for s in extract_stops(text))
    assert all(section.route is not None for section in parse_route_sections(text))


@FUZZ
@given(text=responses, mode=st.sampled_from(MODES))
def test_steps_are_ordered_non_empty_spans_of_the_text(text, mode):
    steps = split_steps(text, mode)
    ends = [0]
    for i, step in enumerate(steps):
        assert step.index == i and step.text.strip() and text[step.start:step.end] == step.text
        assert step.start >= ends[-1]
        ends.append(step.end)
    for step in steps:
        for claim in extract_claims(step.text):            # the pure, no-eval claim extractor
            assert claim.kind in ("equality", "approx", "solution")


@FUZZ
@given(tokens=st.lists(st.sampled_from(["Right", " Wrong", "x", ""]), max_size=6),
       tops=st.lists(st.dictionaries(st.sampled_from(["Right", "Wrong", " Right", "a"]),
                                     st.floats(-1e6, 0.0), max_size=4), max_size=6))
@example(tokens=["Right"], tops=[{"Right": -710.0, "Wrong": 0.0}])    # was: OverflowError in exp()
@example(tokens=["Right"], tops=[{"Right": 0.0, "Wrong": -1e6}])
def test_a_prm_turn_scores_a_probability(tokens, tops):
    s, how = generated_step_score(tokens, tops)
    assert 0.0 <= s <= 1.0 and how in ("both", "right_only", "wrong_only", "neither", "no_label")


@pytest.fixture(scope="module")
def verifier():
    with ToolVerifier(timeout_s=5.0) as v:
        yield v


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=responses)
@example(text="x = " + "9**" * 40 + "9")              # a tower SymPy would never finish
@example(text="__import__('os').system('echo pwned') = 0")
def test_the_sandboxed_verifier_gives_a_named_verdict_for_any_step(verifier, text):
    verdict = verifier.verify_step(text)
    assert verdict.verdict in ("verified", "refuted", "not_checkable")
    if verdict.verdict == "not_checkable" and verdict.reason:
        assert isinstance(verdict.reason, str)
