"""Split a reasoning trace into steps with character offsets (GroundedPRM step-level rewards).

Offsets point into the original text at the *stripped* step text, so `text[s.start:s.end] == s.text` always holds
and a token-level reward can later be placed at the token that covers `s.end - 1`. Pure: stdlib only.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

MODES = ("auto", "blank_line", "step_marker", "newline")

# "Step 1:", "step 12 :", "STEP 3:" anywhere (models also write several on one line); case-insensitive.
_MARKER = re.compile(r"\bstep[ \t]*\d+[ \t]*:", re.IGNORECASE)
# One or more blank lines (a line holding only whitespace counts as blank).
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")


@dataclass(frozen=True)
class Step:
    index: int
    text: str
    start: int
    end: int


def _stripped_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The [start, end) span narrowed to its non-whitespace content, or None when it is blank."""
    chunk = text[start:end]
    lead = len(chunk) - len(chunk.lstrip())
    trail = len(chunk) - len(chunk.rstrip())
    if lead == len(chunk):
        return None
    return start + lead, end - trail


def _steps_from_spans(text: str, spans: list[tuple[int, int]]) -> list[Step]:
    """Strips each span, drops blank ones and numbers the rest from 0."""
    out: list[Step] = []
    for start, end in spans:
        span = _stripped_span(text, start, end)
        if span is not None:
            out.append(Step(len(out), text[span[0]:span[1]], span[0], span[1]))
    return out


def _paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Spans between runs of blank lines."""
    spans, pos = [], 0
    for m in _BLANK_LINES.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return spans


def _line_spans(text: str) -> list[tuple[int, int]]:
    """One span per line (the newline itself excluded)."""
    spans, pos = [], 0
    for m in re.finditer(r"\n", text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return spans


def _marker_spans(text: str) -> list[tuple[int, int]]:
    """Each marker starts a step that runs to the next marker; the preamble is a span too (dropped if blank)."""
    starts = [m.start() for m in _MARKER.finditer(text)]
    bounds = [0] + starts + [len(text)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def split_by_mode(text: str, mode: str) -> list[Step]:
    """Splits with one explicit mode (no fallback)."""
    spans = {"blank_line": _paragraph_spans, "step_marker": _marker_spans, "newline": _line_spans}[mode](text)
    return _steps_from_spans(text, spans)


def split_steps(text: str, mode: str = "auto") -> list[Step]:
    """Steps of `text` by `mode`.

    auto: step_marker when there are >= 2 `Step k:` markers, else blank_line when there are >= 2 non-blank
    paragraphs, else newline. Blank or empty text -> []. Unknown mode -> ValueError.
    """
    if mode not in MODES:
        raise ValueError(f"unknown step split mode {mode!r}; expected one of {MODES}")
    if not text or not text.strip():
        return []
    if mode != "auto":
        return split_by_mode(text, mode)
    if len(_MARKER.findall(text)) >= 2:
        return split_by_mode(text, "step_marker")
    paragraphs = split_by_mode(text, "blank_line")
    if len(paragraphs) >= 2:
        return paragraphs
    return split_by_mode(text, "newline")
