"""split_steps: exact offsets per mode, the auto choice and edge cases (expectations computed by hand)."""
import pytest

from rewards.prm.steps import Step, split_steps


def _check_offsets(text, steps):
    for i, s in enumerate(steps):
        assert s.index == i
        assert text[s.start:s.end] == s.text
        assert s.text == s.text.strip() and s.text


def test_blank_line_mode_offsets():
    text = "First para\nstill first.\n\n\n  Second para  \n \n\nThird"
    steps = split_steps(text, "blank_line")
    assert steps == [Step(0, "First para\nstill first.", 0, 23),
                     Step(1, "Second para", 28, 39),
                     Step(2, "Third", 45, 50)]
    _check_offsets(text, steps)


def test_step_marker_mode_with_and_without_preamble():
    text = "Let us think.\nStep 1: add 2+3.\nstep 2 : get 5\nSTEP 3: done"
    steps = split_steps(text, "step_marker")
    assert [s.text for s in steps] == ["Let us think.", "Step 1: add 2+3.", "step 2 : get 5", "STEP 3: done"]
    assert (steps[1].start, steps[1].end) == (14, 30)
    assert (steps[3].start, steps[3].end) == (46, 58)
    _check_offsets(text, steps)
    # A blank preamble is not a step.
    text2 = "  \nStep 1: a\nStep 2: b"
    steps2 = split_steps(text2, "step_marker")
    assert [(s.text, s.start, s.end) for s in steps2] == [("Step 1: a", 3, 12), ("Step 2: b", 13, 22)]


def test_newline_mode_skips_blank_lines():
    text = "a = 1\n\n   b = 2  \n\t\nc"
    steps = split_steps(text, "newline")
    assert [(s.text, s.start, s.end) for s in steps] == [("a = 1", 0, 5), ("b = 2", 10, 15), ("c", 20, 21)]
    _check_offsets(text, steps)


def test_auto_prefers_markers_then_paragraphs_then_lines():
    markers = "Step 1: x\n\nmore\n\nStep 2: y"
    assert [s.text for s in split_steps(markers)] == ["Step 1: x\n\nmore", "Step 2: y"]
    one_marker = "Step 1: x\n\nsecond para"
    assert [s.text for s in split_steps(one_marker)] == ["Step 1: x", "second para"]   # blank_line
    lines = "line one\nline two\nline three"
    assert [s.text for s in split_steps(lines)] == ["line one", "line two", "line three"]  # newline
    single = "  just one line  "
    assert split_steps(single) == [Step(0, "just one line", 2, 15)]


def test_inline_markers_on_one_line():
    text = "Step 1: 2+3=5. Step 2: 5*2=10"
    steps = split_steps(text)
    assert [(s.text, s.start, s.end) for s in steps] == [("Step 1: 2+3=5.", 0, 14), ("Step 2: 5*2=10", 15, 29)]


def test_empty_and_whitespace_text():
    for mode in ("auto", "blank_line", "step_marker", "newline"):
        assert split_steps("", mode) == []
        assert split_steps(" \n\n\t ", mode) == []


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="unknown step split mode"):
        split_steps("a\nb", "sentences")


def test_crlf_text_offsets_hold():
    text = "a = 1\r\n\r\nb = 2"
    steps = split_steps(text, "blank_line")
    assert [s.text for s in steps] == ["a = 1", "b = 2"]
    _check_offsets(text, steps)
