"""The generative-PRM conversation of GroundedPRM (arXiv 2510.14942; docs/algorithms.md#groundedprm-labels), shared
by the data builder and the scorer.

system: the instruction; user 1: question + step 1; user k: step k; each assistant turn:

    <verify>
    The expression I needed to verify is: {expression}, the result is: {result}
    </verify>
    <judge>
    {rationale}. The conclusion is [{Right|Wrong}]
    </judge>
    <output>
    According to the judgement conclusion, the label of this step is: \\boxed{+|-}
    </output>

The label words are parameters everywhere (prompt, target and `find_label`) so training data and scorer cannot
drift apart (waypoint decision; the released code's training and search scorer disagree,
docs/algorithms.md#departures-from-the-released-code).
Pure: stdlib only.
"""
from __future__ import annotations

import re

RIGHT, WRONG = "Right", "Wrong"
THINKING_STEP = "This is a thinking step, no specific calculations are needed"
NOT_CHECKED = "the tool could not check it"


def system_prompt(right: str = RIGHT, wrong: str = WRONG) -> str:
    return (
        "Your task is to analyse and critique the steps in the solution of a math problem step by step.\n"
        "For each step, respond in this format:\n"
        "1. Verify the computational expression written in the step with a symbolic math tool, as "
        "<verify>\nThe expression I needed to verify is: [expression], the result is: [result]\n</verify>. "
        f"For a step with no calculation write <verify>\n{THINKING_STEP}\n</verify>.\n"
        "2. Judge the logical and computational correctness of the step, using the tool result as a reference, "
        f"as <judge>\n[reason]. The conclusion is [{right}] or [{wrong}]\n</judge>.\n"
        "3. Give the label of the step as <output>\nAccording to the judgement conclusion, the label of this step "
        "is: \\boxed{+} for a correct step or \\boxed{-} for an incorrect one\n</output>.\n\n"
        "Here are the math problem and steps:"
    )


SYSTEM_PROMPT = system_prompt()


def verify_text(verdict_kind: str, expression: str, result: str) -> str:
    """The <verify> sentence from the tool's output (`StepVerdict.verdict`, a claim's `.expression`/`.result`).

    No expression: a thinking step. An expression the tool could not settle keeps the expression and says so,
    since it still tells the PRM what was computed.
    """
    if not expression.strip():
        return THINKING_STEP
    if verdict_kind == "not_checkable" and not result.strip():
        result = NOT_CHECKED
    return f"The expression I needed to verify is: {expression.strip()}, the result is: {result.strip()}"


def user_turn(question: str, step: str, index: int) -> str:
    """The user message for step `index` (0-based): the first step comes with the question."""
    return f"{question.strip()}\n{step.strip()}" if index == 0 else step.strip()


def assistant_turn(verify: str, rationale: str, label: bool, right: str = RIGHT, wrong: str = WRONG) -> str:
    """The target assistant message for one step: label True = correct step."""
    reason = rationale.strip().rstrip(".").strip()
    conclusion = f"The conclusion is [{right if label else wrong}]"
    judge = f"{reason}. {conclusion}" if reason else conclusion
    sign = "+" if label else "-"
    return (f"<verify>\n{verify.strip()}\n</verify>\n"
            f"<judge>\n{judge}\n</judge>\n"
            f"<output>\nAccording to the judgement conclusion, the label of this step is: \\boxed{{{sign}}}\n</output>")


def _is_right(label) -> bool:
    """Labels as bools or as the '+'/'-' of `rewards/prm/labels.py`."""
    if isinstance(label, bool):
        return label
    if label in ("+", "-"):
        return label == "+"
    raise ValueError(f"a step label is a bool or '+'/'-', got {label!r}")


def conversation(question: str, steps: list[str], checks: list, labels: list,
                 right: str = RIGHT, wrong: str = WRONG) -> list[dict]:
    """The multi-turn SFT conversation of one labelled path. `checks` carry `.verify` and `.rationale`
    (`StepCheck`); `labels` are bools or '+'/'-'."""
    if not (len(steps) == len(checks) == len(labels)):
        raise ValueError(f"steps, checks and labels differ in length: {len(steps)}, {len(checks)}, {len(labels)}")
    messages = [{"role": "system", "content": system_prompt(right, wrong)}]
    for index, (step, check, label) in enumerate(zip(steps, checks, labels)):
        messages.append({"role": "user", "content": user_turn(question, step, index)})
        messages.append({"role": "assistant",
                         "content": assistant_turn(check.verify, check.rationale, _is_right(label), right, wrong)})
    return messages


def scoring_messages(question: str, steps_so_far: list[str], prior_assistant_outputs: list[str], step: str,
                     right: str = RIGHT, wrong: str = WRONG) -> list[dict]:
    """What the PRM sees when scoring a new step: the earlier turns with its own earlier outputs, then the step."""
    if len(steps_so_far) != len(prior_assistant_outputs):
        raise ValueError("one prior assistant output per earlier step is needed")
    messages = [{"role": "system", "content": system_prompt(right, wrong)}]
    for index, (earlier, output) in enumerate(zip(steps_so_far, prior_assistant_outputs)):
        messages.append({"role": "user", "content": user_turn(question, earlier, index)})
        messages.append({"role": "assistant", "content": output})
    messages.append({"role": "user", "content": user_turn(question, step, len(steps_so_far))})
    return messages


def find_label(text: str, right: str = RIGHT, wrong: str = WRONG) -> bool | None:
    """True / False from the LAST occurrence of either label word in a generated turn; None when neither occurs.

    One left-to-right scan with the longer word tried first, so 'incorrect' is never read as 'correct'.
    """
    if not right or not wrong or right == wrong:
        raise ValueError(f"label words must be two different non-empty strings, got {right!r}, {wrong!r}")
    words = sorted((right, wrong), key=len, reverse=True)
    matches = list(re.finditer("|".join(re.escape(w) for w in words), text))
    return None if not matches else matches[-1].group(0) == right
