"""Reasoning-answer consistency, by rule: does the reasoning's last in-domain answer equal the final answer?

GRPO-CARE reports the consistency rate with an LLM judge; waypoint has none, so the answer the reasoning
implies is the LAST in-domain answer it mentions:
  torf1/torf2          last standalone "yes"/"no" (any case)            -> "yes" / "no"
  counting1            last standalone option letter A-D (upper case)   -> "a".."d"
  counting2/counting3  last standalone integer                          -> its decimal form, e.g. "03" -> "3"
  planning             the route sections in the reasoning              -> `route_string` of them
Normalised as `map_vqa.score` reports "answer" (clean_answer lower-cases letters). Known limits of the rule:
"A" as an English article counts as option A, and an integer in "Line 3" counts as a count.
"""
from __future__ import annotations

import re

from rewards.routes import parse_route_sections, route_string

_YES_NO = re.compile(r"\b(yes|no)\b", flags=re.IGNORECASE)
_OPTION = re.compile(r"\b([A-D])\b")
# Digits not inside a word or a decimal number ("2.5" holds no integer; a sentence-final "3." does).
_WHOLE_NUMBER = re.compile(r"(?<![\w.])(\d{1,18})(?!\w|\.\d)")
_NUMERIC_TYPES = ("counting2", "counting3")


def _last(pattern: re.Pattern, text: str) -> str | None:
    found = pattern.findall(text)
    return found[-1] if found else None


def implied_answer(reasoning: str, qtype: str) -> str | None:
    """The answer `reasoning` implies for question type `qtype` (see the module table), or None."""
    if not isinstance(reasoning, str):
        return None
    if qtype in ("torf1", "torf2"):
        word = _last(_YES_NO, reasoning)
        return None if word is None else word.lower()
    if qtype == "counting1":
        letter = _last(_OPTION, reasoning)
        return None if letter is None else letter.lower()
    if qtype in _NUMERIC_TYPES:
        number = _last(_WHOLE_NUMBER, reasoning)
        return None if number is None else str(int(number))
    if qtype == "planning":
        sections = parse_route_sections(reasoning)
        return route_string(sections) if sections else None
    raise ValueError(f"unknown question type {qtype!r}")


def consistency(reasoning: str | None, answer: str, qtype: str) -> float:
    """1.0 if implied_answer(reasoning) equals the final `answer`, else 0.0; 0.0 without either.

    Counts compare as integers ("+3" and "3" agree); everything else as strings.
    """
    if reasoning is None or not answer:
        return 0.0
    implied = implied_answer(reasoning, qtype)
    if implied is None:
        return 0.0
    if qtype in _NUMERIC_TYPES:
        return float(re.fullmatch(r"[+-]?\d{1,18}", answer) is not None and int(answer) == int(implied))
    return float(implied == answer)
