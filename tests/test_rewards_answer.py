"""Answer extraction (rewards.answer)."""

import pytest

from rewards.answer import boxed_content, extract_final_answer, extract_stops


@pytest.mark.parametrize("response, expected", [
    ("", ""),
    ("   \n", ""),
    (None, ""),
    (r"Reasoning... \boxed{Yes}", "yes"),
    (r"\boxed{no} hmm, wait: \boxed{yes}", "yes"),            # last box wins
    (r"\boxed{3}. Total {a}", "3"),                            # greedy, then cut at the stray '}'
    (r"\boxed{\text{Yes}}", "yes"),                            # \text unwrapped
    (r"\boxed{\textbf{B}} and {x}", "b"),
    (r"\boxed{x = 5}", "5"),                                   # part after '='
    (r"\boxed{5 km}", "5"),                                    # unit dropped
    (r"\boxed{4.}", "4"),                                      # trailing '.'
    ("so the answer is yes. Done.", "yes"),                    # phrase fallback, first sentence
    ("The final answer is: No. Because...", "no"),             # capitalised, leading ':'
    ("First the answer is no.\nOn reflection the answer is yes", "yes"),  # last phrase
    ("the correct answer is C\nsome more text", "c"),          # first line
    ("Yes", "yes"),                                            # no box, no phrase: whole text (as released)
])
def test_extract_final_answer(response, expected):
    assert extract_final_answer(response) == expected


def test_unwrap_text_off_keeps_released_braces():
    assert extract_final_answer(r"\boxed{\text{Yes}}", unwrap_text=False) == "{yes}"


@pytest.mark.parametrize("response, expected", [
    (r"x \boxed{\frac{1}{2}} and more", r"\frac{1}{2}"),
    (r"\boxed{a} then \boxed{b}", "b"),
    (r"\boxed{3", None),          # unbalanced
    ("no box here", None),
    (None, None),
    (r"\boxed{}", ""),
])
def test_boxed_content(response, expected):
    assert boxed_content(response) == expected


@pytest.mark.parametrize("response, expected", [
    ("Stops: [Campo Grande, Alvalade, Roma].\nThere are 3.", ["Campo Grande", "Alvalade", "Roma"]),
    ("stops : [A (x, y), B, and C]", ["A (x, y)", "B", "C"]),   # parenthesised comma, leading "and"
    ("Stops: [A, ..., …, B.]", ["A", "B"]),
    ("Stops: ['A', \"B\"]", ["A", "B"]),                          # quotes tolerated
    ("Stops: [甲站，乙站]", ["甲站", "乙站"]),                      # full-width comma
    ("Stops: [A [x], B]", ["A [x]", "B"]),                        # nested brackets balanced
    ("Stops: [A, B", []),                                         # never closed
    ("no list", []),
    ("Stops: []", []),
])
def test_extract_stops(response, expected):
    assert extract_stops(response) == expected
