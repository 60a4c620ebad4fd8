"""Reward for MATH-style problems (rows of type "math"; see `data/math_problems.py`).

    total = format_weight · F + acc

The ground truth is the last \\boxed{...} of the row's reference_response (`math_ground_truth`). The answer is
extracted with the map task's helpers (`rewards.answer`), so both sides are cleaned alike: lower-cased, spaces
and \\text / units / degrees / dollars dropped, and only the text after the last "=" kept, so "x = 5" reads as
"5" (and a truth "y = 2x + 1" as "2x+1"). Equivalence is `rewards.prm.check.answers_equivalent` (SymPy built
from the no-eval parser, string fallback): "\\frac{3}{2}", "3/2" and "1.5" are all right for 3/2.

Pure: stdlib + SymPy through rewards.prm, no Ray / torch. SymPy work is bounded by the parser's caps, but like
`rewards.canonical` this is meant to run inside the reward actor's sandboxed child process.
"""
from __future__ import annotations

import re

import sympy

from rewards.answer import (
    ANSWER_OPEN, ANSWER_PHRASES, answer_char_span, boxed_content, clean_answer, extract_final_answer,
    split_reasoning,
)
from rewards.errors import RowError
from rewards.prm.check import answers_equivalent, to_sympy
from rewards.prm.claims import extract_claims
from rewards.prm.parse import MAX_STEP_CHARS, normalise_latex

ANSWER_FORMATS = ("boxed", "tags")
# R1 format (GRPO-CARE), matched against the whole response, as in rewards.map_vqa.
_TAGS_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", flags=re.S)
# "=" but not part of <=, >=, !=, == (the claim extractor's rule).
_EQUALS = re.compile(r"(?<![<>!=])=(?!=)")


def math_ground_truth(row: dict) -> str:
    """The content of the last \\boxed{...} of row["reference_response"]; RowError when there is none."""
    reference = row.get("reference_response") if isinstance(row, dict) else None
    if not isinstance(reference, str):
        raise RowError(f"math row {_row_id(row)}: field 'reference_response' must be a string")
    truth = boxed_content(reference)
    if truth is None or not truth.strip():
        raise RowError(f"math row {_row_id(row)}: reference_response has no non-empty \\boxed{{...}} answer")
    return truth


def _row_id(row) -> str:
    return repr(row.get("id")) if isinstance(row, dict) else f"of type {type(row).__name__}"


def equivalent(a: str, b: str) -> bool:
    """answers_equivalent that never raises: SymPy can fail on odd input (e.g. str() of an integer over 4300
    digits raises ValueError inside the checker), and a model answer must score 0, not crash the reward."""
    try:
        return answers_equivalent(a, b)
    except Exception:  # noqa: BLE001 - any failure means "not shown equivalent"
        return False


def answer_class(answer: str) -> str:
    """COPO's answer-equivalence class: SymPy's string of the parsed answer ("3/2", "\\frac{3}{2}", "1.5" ->
    "3/2"; "1+2x" -> "2*x + 1"), else the stripped lower-cased string; "" for no answer."""
    text = answer.strip() if isinstance(answer, str) else ""
    if not text:
        return ""
    try:
        return sympy.sstr(to_sympy(normalise_latex(text))[0])
    except Exception:  # noqa: BLE001 - unparseable (or unprintable) answers are their own string class
        return text.lower()


def _boxed_mode_answer(text: str) -> tuple[str, bool]:
    """(answer, format ok). The answer is the last box, else the text after an answer phrase; with neither
    there is no answer (map_vqa would clean the whole response, crediting a bare trailing "= 21")."""
    box = boxed_content(text)
    lowered = text.lower()
    if box is None and not any(phrase in lowered for phrase in ANSWER_PHRASES):
        return "", False
    return extract_final_answer(text), box is not None and clean_answer(box) != ""


def _tags_mode_answer(text: str) -> tuple[str, bool]:
    """(answer, format ok): the <answer> content (its box if it has one); no <answer> -> no answer, no box
    fallback (the paper's format reward requires the tags)."""
    if ANSWER_OPEN not in text:
        return "", False
    start, end = answer_char_span(text)
    content = text[start:end]
    answer = extract_final_answer(content) if "boxed{" in content else clean_answer(content)
    return answer, answer != "" and _TAGS_FORMAT.match(text) is not None


def _reasoning(text: str, answer_format: str) -> str | None:
    """The reasoning before a separable final answer (the <think> block, else the text before the answer
    marker), or None when there is no answer marker to separate it from."""
    if answer_format == "tags":
        return split_reasoning(text)[0] if ANSWER_OPEN in text else None
    return split_reasoning(text)[0] if boxed_content(text) is not None else None


def last_equation_result(reasoning: str) -> str | None:
    """The right-hand side of the last "=" of the reasoning: the last claim of the last line holding an "=",
    as the PRM claim extractor reads it (longest parseable head after the "="). None when there is no "=" or
    that line is too long to check."""
    for line in reversed(reasoning.splitlines()):
        if _EQUALS.search(line):
            if len(line) > MAX_STEP_CHARS:
                return None
            claims = [c for c in extract_claims(line) if c.kind == "equality"]   # not "x = 7/3 ≈ 2.33"'s 2.33
            return claims[-1].rhs if claims else None
    return None


def consistent(reasoning: str | None, answer: str) -> float:
    """1.0 when the final answer equals the result of the reasoning's last equation, else 0.0."""
    if reasoning is None or not answer:
        return 0.0
    result = last_equation_result(reasoning)
    return float(result is not None and equivalent(result, answer))


def score(response: str, row: dict, format_weight: float = 1.0, answer_format: str = "boxed",
          **_ignored) -> dict:
    """Score one response to a math row; the keys of `rewards.map_vqa.score`.

    format: boxed -> 1 when a balanced \\boxed{...} with a non-empty cleaned content exists; tags -> 1 when
    the whole response is <think>...</think><answer>...</answer> with a non-empty answer. accuracy: the
    extracted answer is equivalent to `math_ground_truth(row)` (both cleaned alike). accuracy_reward =
    accuracy, detail 0, weight 1. consistent: see `consistent`. answer_class: see `answer_class`. answer_raw:
    the extracted answer string uncanonicalised (COPO's released exact-string classes), None when there is none.
    Map-only options (detail_penalty, ...) are accepted and ignored. A broken response scores 0s; a row
    without a boxed reference raises RowError.
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    truth = clean_answer(math_ground_truth(row))          # validate the row before reading the response
    text = response if isinstance(response, str) else ""
    reader = _tags_mode_answer if answer_format == "tags" else _boxed_mode_answer
    answer, format_ok = reader(text)
    fmt = float(format_ok)
    acc = float(answer != "" and equivalent(answer, truth))
    return {"format": fmt, "accuracy": acc, "detail": 0.0, "weight": 1.0,
            "total": format_weight * fmt + acc, "answer": answer, "accuracy_reward": acc,
            "consistent": consistent(_reasoning(text, answer_format), answer),
            "answer_class": answer_class(answer), "answer_raw": answer or None}
