"""learner.forward: packed and shared-prefix training forwards equal the padded one, values and gradients.

Tolerances: log-probs elementwise atol 1e-5; gradients elementwise atol 1e-5 on every parameter (fp32 models).
"""
import io
import os

import numpy as np
import pytest
import torch

from learner.forward import (
    Segment,
    attention_cost_ratio,
    budget_pieces,
    pack_rows,
    resolve_forward_mode,
    response_logprobs,
    response_mask,
    shared_prefix_mask,
)
from learner.model_zoo import resolve_model
from learner.tiny_models import vision_token_ids

torch.set_num_threads(1)
CACHE = os.environ.setdefault("WAYPOINT_CACHE", os.path.expanduser("~/.cache/waypoint"))
ATOL = 1e-5


def _load(name: str, vision: bool, attn: str = "sdpa"):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
    path = resolve_model(name, cache_dir=CACHE)
    cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=torch.float32, attn_implementation=attn).eval()
    return model, AutoTokenizer.from_pretrained(path), path


@pytest.fixture(scope="module")
def text_setup():
    return _load("tiny-qwen2", vision=False)


def _ids(rng, n):
    return [int(t) for t in rng.integers(20, 1000, size=n)]   # no special / vision tokens


def _text_segments(seed=0):
    rng = np.random.default_rng(seed)
    return [Segment(_ids(rng, 5), [_ids(rng, 1), _ids(rng, 4), []]),
            Segment(_ids(rng, 9), [_ids(rng, 7), _ids(rng, 2)]),
            Segment(_ids(rng, 3), [_ids(rng, 3)])]


def _logp_and_grads(model, segments, mode, vision, pad_id, blocked, weights, **kw):
    model.zero_grad(set_to_none=True)
    logp = response_logprobs(model, segments, mode, 0.7, vision, pad_id, blocked, **kw)
    (logp * weights).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return logp.detach(), grads


def _assert_same(model, segments, vision, pad_id, blocked, modes=("packed", "shared_prefix"), **kw):
    mask = response_mask(segments)
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(1))
    ref_lp, ref_g = _logp_and_grads(model, segments, "padded", vision, pad_id, blocked, weights)
    assert ref_lp.shape == mask.shape and (ref_lp[mask == 0] == 0).all()
    assert (ref_lp[mask > 0] < 0).all() and torch.isfinite(ref_lp).all()
    assert sum(float(g.norm()) for g in ref_g.values()) > 0
    for mode in modes:
        lp, g = _logp_and_grads(model, segments, mode, vision, pad_id, blocked, weights, **kw)
        torch.testing.assert_close(lp, ref_lp, rtol=0, atol=ATOL, msg=lambda m: f"{mode}: {m}")
        assert g.keys() == ref_g.keys()
        for name, ref in ref_g.items():
            torch.testing.assert_close(g[name], ref, rtol=0, atol=ATOL, msg=lambda m: f"{mode} grad {name}: {m}")
    return ref_lp


def test_shared_prefix_mask_by_hand():
    expected = torch.tensor([[1, 0, 0, 0, 0],    # p0
                             [1, 1, 0, 0, 0],    # p1
                             [1, 1, 1, 0, 0],    # a0: prompt + itself
                             [1, 1, 0, 1, 0],    # b0: prompt, not a0
                             [1, 1, 0, 1, 1]],   # b1
                            dtype=torch.bool)
    assert torch.equal(shared_prefix_mask(2, [1, 2]), expected)
    assert torch.equal(shared_prefix_mask(2, [1, 0, 2]), expected)   # an empty response takes no tokens


def test_resolve_forward_mode():
    assert resolve_forward_mode("auto", "sdpa") == "shared_prefix"
    assert resolve_forward_mode("auto", "eager") == "shared_prefix"
    assert resolve_forward_mode("auto", "flash_attention_2") == "padded"
    assert resolve_forward_mode("packed", "eager") == "packed"
    assert resolve_forward_mode("padded", "flash_attention_2") == "padded"
    with pytest.raises(ValueError, match="cannot take"):
        resolve_forward_mode("shared_prefix", "flash_attention_2")
    with pytest.raises(ValueError, match="cannot take"):
        resolve_forward_mode("packed", "flex_attention")
    with pytest.raises(ValueError, match="unknown forward mode"):
        resolve_forward_mode("sharedprefix", "sdpa")


def test_response_mask_and_bad_segments(text_setup):
    mask = response_mask(_text_segments())
    assert mask.tolist() == [[1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0], [0] * 7,
                             [1] * 7, [1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0]]
    assert response_mask([Segment([1], [[]])]).shape == (1, 1)
    model, tok, _ = text_setup
    with pytest.raises(ValueError, match="no responses"):
        response_logprobs(model, [Segment([5, 6], [])], "padded", 1.0, False, tok.pad_token_id)
    with pytest.raises(ValueError, match="unknown forward mode"):
        response_logprobs(model, _text_segments(), "auto", 1.0, False, tok.pad_token_id)


def test_engine_rows_become_segments_in_their_order():
    """learner.batch.segments: consecutive rows of one group share a segment, so output rows keep row order."""
    from data.trajectory import Sample, TrajectoryGroup
    from learner.algorithms.base import Advantages
    from learner.batch import micro_batch, sample_rows, segments
    groups = [TrajectoryGroup(f"g{k}", "p", {}, [5 + k] * (2 + k),
                              [Sample([10 + k] * n, [-1.0] * n, "", "stop", 0) for n in (1, 3, 2)], 0)
              for k in range(2)]
    rows = sample_rows(groups, Advantages(np.zeros((2, 3))))
    picked = [rows[2], rows[3], rows[4]]            # the last of group 0, the first two of group 1
    segs = segments(picked)
    assert [(s.prompt_ids, s.responses) for s in segs] == [([5, 5], [[10, 10]]), ([6, 6, 6], [[11], [11, 11, 11]])]
    torch.testing.assert_close(response_mask(segs), micro_batch(picked, "cpu").mask, rtol=0, atol=0)


@pytest.mark.parametrize("blocked", [False, True])
def test_text_modes_equal_padded(text_setup, blocked):
    model, tok, _ = text_setup
    segs = _text_segments()
    ids = vision_token_ids(tok) if blocked else None
    lp = _assert_same(model, segs, False, tok.pad_token_id, ids)
    # the hand-written reference for one token: a lone forward of prompt + response, no padding anywhere
    s = segs[1]
    with torch.no_grad():
        logits = model(torch.tensor([s.prompt_ids + s.responses[0]])).logits[0, len(s.prompt_ids) - 1:-1] / 0.7
    if ids:
        logits[:, ids] = float("-inf")
    direct = torch.log_softmax(logits, -1).gather(-1, torch.tensor(s.responses[0])[:, None])[:, 0]
    torch.testing.assert_close(lp[3], direct, rtol=0, atol=ATOL)


def test_text_eager_attention_equals_padded():
    model, tok, _ = _load("tiny-qwen2", vision=False, attn="eager")
    _assert_same(model, _text_segments(seed=3), False, tok.pad_token_id, vision_token_ids(tok))


def test_packed_one_sequence_per_row_takes_the_plain_causal_mask(text_setup):
    """Equal-length sequences (each its own row, no 4-D mask) and one shorter one (right-padded row)."""
    model, tok, _ = text_setup
    rng = np.random.default_rng(11)
    segs = [Segment(_ids(rng, 6), [_ids(rng, 3), _ids(rng, 3)]), Segment(_ids(rng, 4), [_ids(rng, 5)])]
    _assert_same(model, segs, False, tok.pad_token_id, None, modes=("packed",))
    _assert_same(model, segs + [Segment(_ids(rng, 2), [_ids(rng, 1)])], False, tok.pad_token_id, None,
                 modes=("packed",))


def test_row_budget_splits_and_packs(text_setup):
    model, tok, _ = text_setup
    segs = _text_segments(seed=5)       # 10, 18 and 6 tokens
    pieces = budget_pieces(segs, max_row_tokens=12)
    # the 18-token segment (prompt 9, responses 7 and 2) does not fit: split into (9+7) and (9+2)
    assert [(len(p.segment.prompt_ids), [len(r) for r in p.segment.responses], p.index) for p in pieces] == \
        [(5, [1, 4, 0], [0, 1, 2]), (9, [7], [3]), (9, [2], [4]), (3, [3], [5])]
    # rows as wide as the widest piece (16): first-fit decreasing puts the 6-token piece beside the 10-token one
    assert [[p.index for p in row] for row in pack_rows(pieces)] == [[[3]], [[4]], [[0, 1, 2], [5]]]
    whole = budget_pieces(segs, max_row_tokens=30)
    assert [[p.index for p in row] for row in pack_rows(whole)] == [[[3, 4]], [[0, 1, 2], [5]]]
    for budget in (12, 30):
        _assert_same(model, segs, False, tok.pad_token_id, None, modes=("shared_prefix",), max_row_tokens=budget)


def test_cost_model_splits_long_responses(text_setup):
    seg = [Segment([1, 2], [[3] * 4] * 4)]
    # cost sum(T + c T^2): c = 0.02 -> whole 18 + 6.48, pairs 2 x (10 + 2) = 24 (best), singles 4 x 6.72
    assert [p.index for p in budget_pieces(seg, 100, cost_ratio=0.02)] == [[0, 1], [2, 3]]
    assert [p.index for p in budget_pieces(seg, 100, cost_ratio=0.1)] == [[0], [1], [2], [3]]
    assert [p.index for p in budget_pieces(seg, 100, cost_ratio=0.0)] == [[0, 1, 2, 3]]
    model = text_setup[0]   # hidden 128, 2 heads of 64, MLP 384: 256 / (2*128*4*64 + 3*128*384)
    assert attention_cost_ratio(model) == pytest.approx(256 / 212992)


def test_sliding_window_models_are_refused():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    cfg = Qwen2Config(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, use_sliding_window=True, sliding_window=4,
                      max_window_layers=0, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(cfg)
    with pytest.raises(ValueError, match="sliding-window"):
        response_logprobs(model, [Segment([1, 2], [[3]])], "shared_prefix", 1.0, False, 0)


# ---- vision-language ---------------------------------------------------------------------------------
def _png(size, color):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def vl_setup():
    from learner.prompting import encode_prompt, load_processor
    model, tok, path = _load("tiny-qwen2-vl", vision=True)
    processor = load_processor(path, vision=True)
    rng = np.random.default_rng(7)
    segs = []
    for q, size, lens in (("Is Denbe on Line 3?", (56, 56), [1, 5, 0]),
                          ("How many stops from Bapa to Denla on the red line?", (112, 56), [6, 2]),
                          ("Which line?", (84, 112), [3])):
        row = {"id": "q", "type": "torf1", "question": q, "map_text": "", "figure": _png(size, (200, 30, 30))}
        enc = encode_prompt(processor, row, vision=True)
        segs.append(Segment(list(enc.input_ids), [_ids(rng, n) for n in lens], enc.mm_inputs))
    return model, tok, segs


@pytest.mark.parametrize("blocked", [False, True])
def test_vision_modes_equal_padded(vl_setup, blocked):
    model, tok, segs = vl_setup
    grids = [tuple(np.asarray(s.mm_inputs["image_grid_thw"])[0]) for s in segs]
    assert len(set(grids)) == 3 and len({len(s.prompt_ids) for s in segs}) == 3   # three layouts
    _assert_same(model, segs, True, tok.pad_token_id, vision_token_ids(tok) if blocked else None)


def test_vision_shared_prefix_trains_the_vision_tower(vl_setup):
    model, tok, segs = vl_setup
    model.zero_grad(set_to_none=True)
    response_logprobs(model, segs, "shared_prefix", 1.0, True, tok.pad_token_id).sum().backward()
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_qwen2_5_vl_modes_equal_padded(vl_setup):
    """The Qwen2.5-VL class takes the same path (its own get_rope_index, 3-D positions, window-attention tower):
    a random small one from its config, fed the tiny Qwen2-VL processor's prompts (same tokens and patches)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    vl, tok, segs = vl_setup
    c = vl.config
    text = c.text_config.to_dict()
    text.update(num_hidden_layers=1, layer_types=["full_attention"])
    vision = dict(depth=2, hidden_size=64, out_hidden_size=128, intermediate_size=128, num_heads=2,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                  fullatt_block_indexes=[1])
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=c.image_token_id,
                           video_token_id=c.video_token_id, vision_start_token_id=c.vision_start_token_id,
                           vision_end_token_id=c.vision_end_token_id, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    _assert_same(model, segs, True, tok.pad_token_id, vision_token_ids(tok))
