"""TEMPORARY padded-only forward (replaced by the packing branch's learner/forward.py at merge)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Segment:
    prompt_ids: list[int]
    responses: list[list[int]]
    mm_inputs: dict | None = None


def resolve_forward_mode(requested: str, attn_implementation: str) -> str:
    return "padded"


def gather_logprobs(logits, targets):
    return torch.gather(F.log_softmax(logits, dim=-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def response_mask(segments) -> torch.Tensor:
    lens = [len(r) for s in segments for r in s.responses]
    m = torch.zeros((len(lens), max(max(lens), 1)))
    for i, n in enumerate(lens):
        m[i, :n] = 1
    return m


def response_logprobs(model, segments, mode, temperature, vision, pad_id, blocked_ids=None):
    rows = [(s.prompt_ids, r, s.mm_inputs) for s in segments for r in s.responses]
    P = max(len(p) for p, _, _ in rows)
    R = max(max(len(r) for _, r, _ in rows), 1)
    b = len(rows)
    ids = torch.full((b, P + R), pad_id, dtype=torch.long)
    att = torch.zeros((b, P + R), dtype=torch.long)
    for i, (p, r, _) in enumerate(rows):
        ids[i, P - len(p):P] = torch.tensor(p)
        att[i, P - len(p):P] = 1
        if r:
            ids[i, P:P + len(r)] = torch.tensor(r)
            att[i, P:P + len(r)] = 1
    dev = next(model.parameters()).device
    ids, att = ids.to(dev), att.to(dev)
    kw = {}
    if not vision:
        kw["position_ids"] = (att.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=att, use_cache=False, **kw).logits
    logits = logits[:, P - 1:P - 1 + R].float() / temperature
    if blocked_ids:
        logits[..., blocked_ids] = float("-inf")
    return gather_logprobs(logits, ids[:, P:P + R]) * response_mask(segments).to(dev)
