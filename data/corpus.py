"""Text for training a small BPE tokenizer: prompts and ideal answers over synthetic networks, so its
vocabulary covers the station syllables, line names, question templates and answer formats."""
from __future__ import annotations

from data.prompts import prompt_text
from data.questions import synthetic_dataset
from rewards.map_vqa import QUESTION_TYPES


def tokenizer_corpus(n_networks: int = 200, seed: int = 0, per_type: int = 2) -> list[str]:
    """Per row: the full prompt text and the reference response (the planning answers among them)."""
    rows = synthetic_dataset(n_networks, types=QUESTION_TYPES, per_type=per_type, seed=seed, render_images=False)
    texts = []
    for row in rows:
        texts.append(prompt_text(row, include_map_text=True))
        texts.append(row["reference_response"])
    return texts
