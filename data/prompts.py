"""Prompt text and HF chat messages for a row: the question, optionally the map as text, then the answer
format the scorer (`rewards.map_vqa`) reads for that question type."""
from __future__ import annotations

_BOXED_YES_NO = "Answer yes or no and put the final answer in \\boxed{}, for example \\boxed{yes}."
_BOXED_INT = "Put the final answer (a whole number) in \\boxed{}, for example \\boxed{3}."

FORMAT_INSTRUCTIONS = {
    "torf1": _BOXED_YES_NO,
    "torf2": _BOXED_YES_NO,
    "counting1": ("Choose one option. You may first list the stops in between as Stops: [stop, stop]. "
                  "Put the letter of your final choice in \\boxed{}, for example \\boxed{A}."),
    "counting2": _BOXED_INT,
    "counting3": _BOXED_INT,
    "planning": ("Give the route as one section per ride, with a line containing only -- between sections. "
                 "Each section has exactly three lines:\n"
                 "Route Name: <line name>\nDeparture Stop: <station>\nArrival Stop: <station>\n"
                 "Use the line and station names exactly as written on the map."),
}


def prompt_text(row: dict, include_map_text: bool = True) -> str:
    """The user prompt as plain text (the text part of `build_messages`)."""
    parts = [row["question"].strip()]
    if include_map_text and row.get("map_text"):
        parts.append("Metro lines:\n" + row["map_text"])
    instruction = FORMAT_INSTRUCTIONS.get(row["type"])
    if instruction is None:
        raise ValueError(f"row {row.get('id')!r}: unknown question type {row['type']!r}")
    parts.append(instruction)
    return "\n\n".join(parts)


def build_messages(row: dict, modality: str = "text", include_map_text: bool = True) -> list[dict]:
    """One user message in HF chat format; with modality="image" an image part comes first."""
    if modality not in ("text", "image"):
        raise ValueError(f"modality must be 'text' or 'image', got {modality!r}")
    content = [{"type": "image"}] if modality == "image" else []
    content.append({"type": "text", "text": prompt_text(row, include_map_text)})
    return [{"role": "user", "content": content}]
