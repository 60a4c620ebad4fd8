"""Where each sampled token ends in the decoded response text.

Rewards and step splits work on characters (`rewards.answer.answer_char_span`, `rewards.prm.steps`); the
learner, the EMA reference and the PRM actor work on tokens. This is the one map between the two.
"""
from __future__ import annotations


def token_char_ends(tokenizer, token_ids: list[int]) -> tuple[str, list[int]]:
    """(text, ends): text = decode(token_ids) without special tokens; ends[k] = end offset of token k in it.

    Fast path: the fast tokenizer's offsets of the re-encoded text, when re-encoding gives back exactly the
    sampled tokens (the usual case). Otherwise (a non-canonical tokenisation was sampled) the ends come from
    decoding every prefix, which is exact for any token sequence.
    """
    special = set(tokenizer.all_special_ids)
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    body = [t for t in token_ids if t not in special]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] == body and all(t not in special for t in token_ids[:len(body)]):
        ends = [e for _, e in enc["offset_mapping"]] + [len(text)] * (len(token_ids) - len(body))
        return text, ends
    prefixes = tokenizer.batch_decode([token_ids[:k + 1] for k in range(len(token_ids))],
                                      skip_special_tokens=True)
    ends, hi = [], 0
    for p in prefixes:   # a partial multi-byte character may decode longer than its final form: keep monotone
        hi = max(hi, min(len(p), len(text)))
        ends.append(hi)
    return text, ends
