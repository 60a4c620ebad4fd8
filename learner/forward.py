"""The learner's training forward: per-token log-probs of sampled responses, with the prompt shared.

A GRPO step scores G responses of one prompt. The padded layout ([left pad | prompt | response | right pad] per
response) encodes the prompt G times. `shared_prefix` encodes it once: one segment (a prompt and some of its
responses) is laid out as one run of tokens [prompt | r_1 | r_2 | ... | r_k] in a packed row, and a 4-D
attention mask lets every response token see its prompt and, causally, its own response only:

    prompt 2 tokens, responses of lengths 1 and 2      keys:  p0 p1 a0 b0 b1
        p0  1 0 0 0 0                                   (1 = may attend)
        p1  1 1 0 0 0
        a0  1 1 1 0 0
        b0  1 1 0 1 0
        b1  1 1 0 1 1

Positions are explicit: the prompt 0..P-1, every response P..P+len-1 (for Qwen2-VL's M-RoPE the prompt's 3-D
positions come from the model's own get_rope_index, and each response continues them exactly as in a padded
row). There are no pad tokens inside a segment; rows are right-padded only to stack several in one call.

Why a packed row with a 4-D mask and not prefix key/value reuse: it is one ordinary forward, so gradients flow
through the shared prompt with no cache plumbing, gradient checkpointing and DeepSpeed see a normal module
call, the vision tower runs once per segment in the same call, and it is exact under the attention
implementations that take a custom mask unchanged (sdpa, eager; transformers returns a 4-D mask as given).
flash_attention_2 cannot take such a mask: `resolve_forward_mode("auto", ...)` picks `padded` there, and asking
for a packed mode with it raises. Models with sliding-window layers are refused too (the 4-D mask would bypass
the window).

Memory and rows: the mask is O(L^2) per row, and attention over a row computes the masked blocks too (sdpa
kernels given a mask do not skip them), so packing unrelated sequences into one long row costs quadratic
work for nothing (sharing happens only inside a segment). Rows are therefore no wider than the widest piece
(first-fit decreasing: short pieces fill the room beside others, a piece as wide as the widest gets its own
row), rows are right-padded to that width and run in one call. A segment is split by responses into pieces
that each carry a copy of the prompt (and image) when it is longer than `max_row_tokens` (so no row is wider
than the budget unless one prompt plus one response is), or when a rough cost model (dense-layer work ~ T,
attention ~ ratio x T^2 from the model's widths) says a few prompt copies are cheaper than the masked
response-to-response blocks of one long row (long responses on a narrow model). Mask memory: rows x width^2
bytes (bool, sdpa) or x4 (fp32 additive, eager), e.g. one 4096-token row = 16 MiB (sdpa).

`packed` is the same machinery with every response in its own piece (padding-free, nothing shared): the middle
column of benchmarks/learner.py. `padded` is the engine's original layout.

Logits are computed only at the columns that predict a response token (`logits_to_keep`, the union of those
columns over the rows), in every mode: the vocabulary projection of prompt positions is never used. In the
padded layout that is exactly R columns; packed rows may need more of their columns, never more than all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

FORWARD_MODES = ("padded", "packed", "shared_prefix")
# attention implementations that use a custom 4-D mask exactly as given
MASKED_ATTENTION = ("sdpa", "eager")
DEFAULT_ROW_TOKENS = 4096
IMAGE_KEYS = ("pixel_values", "image_grid_thw")    # one entry per image: concatenated over images
TOKEN_KEYS = ("mm_token_type_ids",)                  # one entry per prompt token: placed under the prompt


@dataclass
class Segment:
    """One prompt and some (>= 1) of its sampled responses."""
    prompt_ids: list[int]
    responses: list[list[int]]      # response token ids (may be empty lists)
    mm_inputs: dict | None = None   # processor outputs for a multimodal prompt, as TrajectoryGroup.mm_inputs

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + sum(len(r) for r in self.responses)


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] at every position: [..., V] x [...] -> [...] (the HF engine uses it too)."""
    return torch.gather(F.log_softmax(logits, dim=-1), -1, targets.unsqueeze(-1)).squeeze(-1)


def resolve_forward_mode(requested: str, attn_implementation: str) -> str:
    """`auto` -> shared_prefix where it is exact (sdpa, eager), else padded. A packed mode with an attention
    implementation that cannot take a custom 4-D mask raises."""
    if requested == "auto":
        return "shared_prefix" if attn_implementation in MASKED_ATTENTION else "padded"
    if requested not in FORWARD_MODES:
        raise ValueError(f"unknown forward mode {requested!r}; expected auto or one of {', '.join(FORWARD_MODES)}")
    if requested != "padded" and attn_implementation not in MASKED_ATTENTION:
        raise ValueError(f"forward mode {requested!r} needs a custom 4-D attention mask, which attention "
                         f"implementation {attn_implementation!r} cannot take; use sdpa or eager attention, "
                         f"or forward mode 'padded' (or 'auto')")
    return requested


def response_lengths(segments: list[Segment]) -> list[int]:
    return [len(r) for s in segments for r in s.responses]


def response_mask(segments: list[Segment]) -> torch.Tensor:
    """[B, Rmax] float, 1 at response tokens; rows = responses in segment order, Rmax >= 1."""
    lens = response_lengths(segments)
    mask = torch.zeros((len(lens), max(max(lens, default=0), 1)), dtype=torch.float32)
    for b, n in enumerate(lens):
        mask[b, :n] = 1.0
    return mask


def response_logprobs(model, segments: list[Segment], mode: str, temperature: float, vision: bool,
                      pad_id: int, blocked_ids: list[int] | None = None,
                      max_row_tokens: int = DEFAULT_ROW_TOKENS) -> torch.Tensor:
    """[B, Rmax] log pi(response token t | prefix), rows = responses in segment order, 0 past each response's end.

    `blocked_ids` are tokens the rollout never samples (image placeholders): the behaviour distribution is
    renormalised without them, so the learner's must be too, or every ratio is off by log(1 - p_blocked).
    """
    _check_segments(segments)
    if mode == "padded":
        inputs, pick = padded_inputs(segments, pad_id, vision)
    elif mode in ("packed", "shared_prefix"):
        check_packable(model, mode)
        pieces = (single_response_pieces(segments) if mode == "packed"
                  else budget_pieces(segments, max_row_tokens, attention_cost_ratio(model)))
        inputs, pick = packed_inputs(model, pieces, len(response_lengths(segments)), pad_id, vision)
    else:
        raise ValueError(f"unknown forward mode {mode!r}; expected one of {', '.join(FORWARD_MODES)}")
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    rows, cols, targets = (t.to(device) for t in pick)
    keep, kcols = torch.unique(cols, return_inverse=True)    # sorted columns whose logits are used
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits      # [rows, K, V]
    logits = logits[rows, kcols].float() / temperature                          # [B, Rmax, V]
    if blocked_ids:
        logits[..., blocked_ids] = float("-inf")
    logp = gather_logprobs(logits, targets)
    return torch.where(response_mask(segments).to(device) > 0, logp, torch.zeros_like(logp))


def _check_segments(segments: list[Segment]) -> None:
    if not segments:
        raise ValueError("no segments to score")
    for i, s in enumerate(segments):
        if not s.prompt_ids:
            raise ValueError(f"segment {i} has an empty prompt")
        if not s.responses:
            raise ValueError(f"segment {i} has no responses")
        unknown = set(s.mm_inputs or {}) - set(IMAGE_KEYS) - set(TOKEN_KEYS)
        if unknown:
            raise ValueError(f"segment {i}: multimodal inputs {sorted(unknown)} are not supported "
                             f"(known: {IMAGE_KEYS + TOKEN_KEYS})")


def check_packable(model, mode: str) -> None:
    """A packed mode needs an attention implementation that takes the 4-D mask, and no sliding windows."""
    text = model.config.get_text_config()
    attn = getattr(text, "_attn_implementation", None) or model.config._attn_implementation
    resolve_forward_mode(mode, attn)
    if "sliding_attention" in (getattr(text, "layer_types", None) or []):
        raise ValueError(f"forward mode {mode!r}: the model has sliding-window layers, which a custom 4-D mask "
                         f"would bypass; use forward mode 'padded'")


# ---- padded: one row per response --------------------------------------------------------------------
def padded_inputs(segments: list[Segment], pad_id: int, vision: bool) -> tuple[dict, tuple]:
    """[left pad | prompt | response | right pad] rows; every prompt ends at column P - 1, so the logits that
    predict response token t sit at column P - 1 + t of every row."""
    seqs = [(s, r) for s in segments for r in s.responses]
    p_max = max(len(s.prompt_ids) for s, _ in seqs)
    r_max = max(max(len(r) for _, r in seqs), 1)
    b = len(seqs)
    input_ids = torch.full((b, p_max + r_max), pad_id, dtype=torch.long)
    attention = torch.zeros((b, p_max + r_max), dtype=torch.long)
    for row, (s, r) in enumerate(seqs):
        start = p_max - len(s.prompt_ids)
        input_ids[row, start:p_max] = torch.tensor(s.prompt_ids)
        attention[row, start:p_max + len(r)] = 1
        if r:
            input_ids[row, p_max:p_max + len(r)] = torch.tensor(r)
    inputs = {"input_ids": input_ids, "attention_mask": attention}
    if not vision:   # multimodal rope computes its own positions from the mask
        inputs["position_ids"] = (attention.cumsum(-1) - 1).clamp(min=0)
    mm = [s.mm_inputs for s, _ in seqs]
    if any(mm):
        if not all(mm):
            raise ValueError("padded forward: some prompts have multimodal inputs and some do not")
        inputs.update(_padded_mm(mm, input_ids.shape, p_max, [len(s.prompt_ids) for s, _ in seqs]))
    rows = torch.arange(b)[:, None].expand(b, r_max)
    cols = (p_max - 1 + torch.arange(r_max))[None, :].expand(b, r_max)
    return inputs, (rows, cols, input_ids[:, p_max:p_max + r_max])


def _padded_mm(mm: list[dict], shape, p_max: int, lens: list[int]) -> dict:
    """Per-image tensors concatenated row after row; per-token arrays placed under each row's prompt."""
    out: dict[str, torch.Tensor] = {}
    for key in mm[0]:
        arrs = [np.asarray(m[key]) for m in mm]
        if key in IMAGE_KEYS:
            out[key] = torch.as_tensor(np.concatenate(arrs, axis=0))
        else:
            full = torch.zeros(shape, dtype=torch.long)
            for row, (a, n) in enumerate(zip(arrs, lens)):
                full[row, p_max - n:p_max] = torch.as_tensor(a.reshape(-1)[:n])
            out[key] = full
    return out


# ---- packed rows: prompts once per piece, block-causal mask ------------------------------------------
@dataclass
class Piece:
    """A segment, or part of its responses, laid out contiguously in a row; `index[k]` is the output row of
    `segment.responses[k]`."""
    segment: Segment
    index: list[int]

    @property
    def num_tokens(self) -> int:
        return self.segment.num_tokens


def _indexed(segments: list[Segment]):
    b = 0
    for s in segments:
        yield s, list(range(b, b + len(s.responses)))
        b += len(s.responses)


def single_response_pieces(segments: list[Segment]) -> list[Piece]:
    """`packed`: every response with its own copy of the prompt."""
    return [Piece(Segment(s.prompt_ids, [r], s.mm_inputs), [i]) for s, idx in _indexed(segments)
            for r, i in zip(s.responses, idx)]


def attention_cost_ratio(model) -> float:
    """Multiply-adds of attention per (query, key) pair over those of the dense layers per token, per layer: the
    weight of the quadratic term in a row's cost ~ T + ratio * T^2 (a masked row computes all T^2 pairs)."""
    c = model.config.get_text_config()
    heads = c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    hd = getattr(c, "head_dim", None) or c.hidden_size // heads
    dense = 2 * c.hidden_size * (heads + kv) * hd + 3 * c.hidden_size * c.intermediate_size
    return 2 * heads * hd / dense


def _chunks(prompt_len: int, lens: list[int], per_piece: int, max_row_tokens: int) -> list[list[int]]:
    """Consecutive response positions, at most `per_piece` per chunk and (but for a lone response) at most
    `max_row_tokens` tokens with the prompt."""
    out: list[list[int]] = []
    used = 0
    for k, n in enumerate(lens):
        if not out or len(out[-1]) == per_piece or used + n > max_row_tokens:
            out.append([])
            used = prompt_len
        out[-1].append(k)
        used += n
    return out


def budget_pieces(segments: list[Segment], max_row_tokens: int, cost_ratio: float = 0.0) -> list[Piece]:
    """`shared_prefix`: each segment as the pieces of lowest estimated cost sum(T + cost_ratio * T^2) over
    splits into runs of at most k consecutive responses (k = 1 .. all), each piece at most `max_row_tokens`.
    The quadratic term is what the masked blocks between responses cost: with long responses on a narrow
    model, a few prompt copies are cheaper than one very long row. cost_ratio 0: whole segments (ties go to
    fewer pieces), split only by the budget."""
    pieces = []
    for s, idx in _indexed(segments):
        p, lens = len(s.prompt_ids), [len(r) for r in s.responses]
        best, best_cost = None, float("inf")
        for per_piece in range(len(lens), 0, -1):
            chunks = _chunks(p, lens, per_piece, max_row_tokens)
            sizes = [p + sum(lens[k] for k in c) for c in chunks]
            cost = sum(t + cost_ratio * t * t for t in sizes)
            if cost < best_cost * (1 - 1e-9):
                best, best_cost = chunks, cost
        for c in best:
            pieces.append(Piece(Segment(s.prompt_ids, [s.responses[k] for k in c], s.mm_inputs),
                                [idx[k] for k in c]))
    return pieces


def pack_rows(pieces: list[Piece]) -> list[list[Piece]]:
    """Rows no wider than the widest piece: first-fit decreasing, so short pieces fill the rows' padding but
    no row grows the quadratic attention cost beyond what the widest piece alone needs."""
    width = max(p.num_tokens for p in pieces)
    rows: list[list[Piece]] = []
    used: list[int] = []
    for p in sorted(pieces, key=lambda q: -q.num_tokens):   # stable: equal lengths keep their order
        for r in range(len(rows)):
            if used[r] + p.num_tokens <= width:
                rows[r].append(p)
                used[r] += p.num_tokens
                break
        else:
            rows.append([p])
            used.append(p.num_tokens)
    return rows


def shared_prefix_mask(prompt_len: int, response_lens: list[int]) -> torch.Tensor:
    """[T, T] bool, T = prompt_len + sum(response_lens): True where query token i may attend to key token j.
    The prompt is causal; each response sees the whole prompt and itself causally, never another response."""
    total = prompt_len + sum(response_lens)
    allowed = torch.zeros((total, total), dtype=torch.bool)
    allowed[:prompt_len, :prompt_len] = torch.ones(prompt_len, prompt_len, dtype=torch.bool).tril()
    start = prompt_len
    for n in response_lens:
        allowed[start:start + n, :prompt_len] = True
        allowed[start:start + n, start:start + n] = torch.ones(n, n, dtype=torch.bool).tril()
        start += n
    return allowed


def segment_positions(model, segment: Segment, vision: bool) -> torch.Tensor:
    """[D, P + Rmax] positions of the prompt followed by a response (D = 3 for M-RoPE, else 1); the same for
    every response of the segment, since only token types and image grids decide them."""
    length = len(segment.prompt_ids) + max(len(r) for r in segment.responses)
    if not vision:
        return torch.arange(length)[None]
    if not segment.mm_inputs:   # text-only prompt on a VLM: plain text positions on all three axes
        return torch.arange(length)[None].expand(3, length)
    p = len(segment.prompt_ids)
    types = torch.zeros((1, length), dtype=torch.long)
    types[0, :p] = prompt_token_types(model, segment)
    ids = torch.zeros((1, length), dtype=torch.long)
    ids[0, :p] = torch.tensor(segment.prompt_ids)
    grid = torch.as_tensor(np.asarray(segment.mm_inputs["image_grid_thw"]))
    position_ids, _ = getattr(model, "model", model).get_rope_index(input_ids=ids, mm_token_type_ids=types,
                                                                    image_grid_thw=grid)
    return position_ids[:, 0]


def prompt_token_types(model, segment: Segment) -> torch.Tensor:
    """[P] modality of each prompt token (0 text, 1 image, 2 video): the processor's, else from the ids."""
    p = len(segment.prompt_ids)
    given = (segment.mm_inputs or {}).get("mm_token_type_ids")
    if given is not None:
        return torch.as_tensor(np.asarray(given).reshape(-1)[:p], dtype=torch.long)
    ids = torch.tensor(segment.prompt_ids)
    types = torch.zeros(p, dtype=torch.long)
    types[ids == model.config.image_token_id] = 1
    types[ids == getattr(model.config, "video_token_id", -1)] = 2
    return types


def packed_inputs(model, pieces: list[Piece], n_responses: int, pad_id: int,
                  vision: bool) -> tuple[dict, tuple]:
    """Model inputs for rows of pieces, and (row, column, target) of every response token's prediction."""
    rows = pack_rows(pieces)
    width = max(sum(p.num_tokens for p in row) for row in rows)
    r_max = max(max((len(r) for p in pieces for r in p.segment.responses), default=0), 1)
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    allowed = torch.zeros((n, 1, width, width), dtype=torch.bool)
    positions = torch.zeros((3 if vision else 1, n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long)
    pick_rows = torch.zeros((n_responses, r_max), dtype=torch.long)
    pick_cols = torch.zeros((n_responses, r_max), dtype=torch.long)
    targets = torch.zeros((n_responses, r_max), dtype=torch.long)
    images: dict[str, list] = {k: [] for k in IMAGE_KEYS}
    for ri, row in enumerate(rows):
        at = 0
        for piece in row:
            s = piece.segment
            p, lens = len(s.prompt_ids), [len(r) for r in s.responses]
            end = at + s.num_tokens
            input_ids[ri, at:at + p] = torch.tensor(s.prompt_ids)
            allowed[ri, 0, at:end, at:end] = shared_prefix_mask(p, lens)
            pos = segment_positions(model, s, vision)
            positions[:, ri, at:at + p] = pos[:, :p]
            if s.mm_inputs:
                for k in IMAGE_KEYS:
                    images[k].append(np.asarray(s.mm_inputs[k]))
                types[ri, at:at + p] = prompt_token_types(model, s)
            c = at + p
            for r, b in zip(s.responses, piece.index):
                k = len(r)
                pick_rows[b] = ri
                pick_cols[b] = at + p - 1     # past the end: any used column, masked later
                if k:
                    input_ids[ri, c:c + k] = torch.tensor(r)
                    positions[:, ri, c:c + k] = pos[:, p:p + k]
                    pick_cols[b, 1:k] = torch.arange(c, c + k - 1)
                    targets[b, :k] = torch.tensor(r)
                c += k
            at = end
        idx = torch.arange(at, width)   # right padding: each pad token sees only itself (no empty softmax)
        allowed[ri, 0, idx, idx] = True
    if all(len(row) == 1 and len(row[0].segment.responses) == 1 for row in rows):
        # one sequence per row: plain causal with right padding, which transformers builds itself from a 2-D
        # mask (and sdpa then runs its causal kernel when nothing is padded, skipping the upper triangle)
        mask = torch.zeros((n, width), dtype=torch.long)
        for ri, row in enumerate(rows):
            mask[ri, :row[0].num_tokens] = 1
    else:
        mask = _attention_mask(model, allowed)
    inputs = {"input_ids": input_ids, "position_ids": positions if vision else positions[0], "attention_mask": mask}
    if images["pixel_values"]:
        inputs.update({k: torch.as_tensor(np.concatenate(v, axis=0)) for k, v in images.items()})
        inputs["mm_token_type_ids"] = types
    return inputs, (pick_rows, pick_cols, targets)


def _attention_mask(model, allowed: torch.Tensor) -> torch.Tensor:
    """sdpa takes the boolean mask (True = attend); eager adds it to the scores, so it gets 0 / dtype min."""
    text = model.config.get_text_config()
    attn = getattr(text, "_attn_implementation", None) or model.config._attn_implementation
    if attn == "sdpa":
        return allowed
    dtype = model.dtype
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
