"""Prompt text and HF chat messages for a row: optionally the map as text, the answer format the scorer
(`rewards.map_vqa`, or `rewards.math_answer` for math) reads for that question type, then the question.

answer_format "boxed" asks for `\\boxed{}` (RewardMap); "tags" asks for the R1 format
`<think>...</think><answer>...</answer>` (GRPO-CARE), matching `score(..., answer_format=...)`.
Math rows (type "math", `rewards.math_answer`) use `TASK_INSTRUCTIONS`; they have no map text.
"""
from __future__ import annotations

ANSWER_FORMATS = ("boxed", "tags")

_BOXED_YES_NO = "Answer yes or no and put the final answer in \\boxed{}, for example \\boxed{yes}."
_BOXED_INT = "Put the final answer (a whole number) in \\boxed{}, for example \\boxed{3}."
_ROUTE_SECTIONS = ("Give the route as one section per ride, with a line containing only -- between sections. "
                   "Each section has exactly three lines:\n"
                   "Route Name: <line name>\nDeparture Stop: <station>\nArrival Stop: <station>\n"
                   "Use the line and station names exactly as written on the map.")

FORMAT_INSTRUCTIONS = {
    "torf1": _BOXED_YES_NO,
    "torf2": _BOXED_YES_NO,
    "counting1": ("Choose one option. You may first list the stops in between as Stops: [stop, stop]. "
                  "Put the letter of your final choice in \\boxed{}, for example \\boxed{A}."),
    "counting2": _BOXED_INT,
    "counting3": _BOXED_INT,
    "planning": _ROUTE_SECTIONS,
}

_THINK = "Think inside <think></think>, then give only the final answer inside <answer></answer>"
_TAGS_YES_NO = f"Answer yes or no. {_THINK}, for example <think>...</think><answer>yes</answer>."
_TAGS_INT = f"The answer is a whole number. {_THINK}, for example <think>...</think><answer>3</answer>."

TAG_INSTRUCTIONS = {
    "torf1": _TAGS_YES_NO,
    "torf2": _TAGS_YES_NO,
    # the Stops list is reasoning, so it goes in <think> (the scorer finds it anywhere in the response)
    "counting1": ("Choose one option. Think inside <think></think> (you may list the stops in between there as "
                  "Stops: [stop, stop]), then give only the final answer inside <answer></answer>: the letter of "
                  "your choice, for example <think>...</think><answer>A</answer>."),
    "counting2": _TAGS_INT,
    "counting3": _TAGS_INT,
    "planning": (f"{_THINK}: the route, for example "
                 "<think>...</think><answer>Route Name: ...\nDeparture Stop: ...\nArrival Stop: ...</answer>.\n"
                 + _ROUTE_SECTIONS),
}


# Task types beside the map questions, per answer format. Kept out of FORMAT_INSTRUCTIONS / TAG_INSTRUCTIONS,
# whose keys are the map QUESTION_TYPES. Math steps go one per paragraph: the PRM splits steps on blank lines.
TASK_INSTRUCTIONS = {
    "math": {
        "boxed": ("Solve the problem step by step. Write each step as its own paragraph (separate steps with a "
                  "blank line), and put the final answer in \\boxed{}."),
        "tags": ("Solve the problem. Think step by step inside <think></think> (one step per paragraph), then "
                 "give only the final answer inside <answer></answer>."),
    },
}


def format_instruction(qtype: str, answer_format: str = "boxed") -> str | None:
    """The answer-format sentence for a question type (None for an unknown type)."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if qtype in TASK_INSTRUCTIONS:
        return TASK_INSTRUCTIONS[qtype][answer_format]
    table = TAG_INSTRUCTIONS if answer_format == "tags" else FORMAT_INSTRUCTIONS
    return table.get(qtype)


def prompt_text(row: dict, include_map_text: bool = True, answer_format: str = "boxed") -> str:
    """The user prompt as plain text (the text part of `build_messages`): map, answer instruction, question.

    What the questions of one network have in common comes first (the map, as the image does in a vision
    prompt, then the instruction of the question type), so they share a token prefix and vLLM's prefix cache
    encodes it once. Measured on the 400 held-out questions of configs/cpu_smollm2.yaml (8 per map, greedy):
    generation 32 -> 12 s per 100 questions against question-first prompts."""
    instruction = format_instruction(row["type"], answer_format)
    if instruction is None:
        raise ValueError(f"row {row.get('id')!r}: unknown question type {row['type']!r}")
    parts = []
    if include_map_text and row.get("map_text"):
        parts.append("Metro lines:\n" + row["map_text"])
    parts += [instruction, row["question"].strip()]
    return "\n\n".join(parts)


def build_messages(row: dict, modality: str = "text", include_map_text: bool = True,
                   answer_format: str = "boxed") -> list[dict]:
    """One user message in HF chat format; with modality="image" an image part comes first."""
    if modality not in ("text", "image"):
        raise ValueError(f"modality must be 'text' or 'image', got {modality!r}")
    content = [{"type": "image"}] if modality == "image" else []
    content.append({"type": "text", "text": prompt_text(row, include_map_text, answer_format)})
    return [{"role": "user", "content": content}]
