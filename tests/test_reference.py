"""GRPO-CARE's EMA reference: the update rule, its schedule, answer-span likelihoods and checkpointing."""
import os

import numpy as np
import pytest
import torch

from data.trajectory import Sample, TrajectoryGroup
from learner.model_zoo import resolve_model
from learner.reference import EMAReference, answer_token_mask, ema_due, ema_update_, missed_updates
from learner.token_offsets import token_char_ends

torch.set_num_threads(1)
CACHE = os.environ.setdefault("WAYPOINT_CACHE", os.path.expanduser("~/.cache/waypoint"))


@pytest.fixture(scope="module")
def model_path():
    return resolve_model("tiny-qwen2", cache_dir=CACHE)


@pytest.fixture(scope="module")
def tok(model_path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(model_path)


def test_ema_update_moves_by_exactly_one_minus_decay_of_the_gap():
    ref = {"w": torch.tensor([1.0, 2.0, -4.0], dtype=torch.float64)}
    policy = {"w": np.array([3.0, 0.0, -4.0]), "unused": np.zeros(1)}
    ema_update_(ref, policy, decay=0.9)
    # gap [2, -2, 0] -> moves [0.2, -0.2, 0]
    np.testing.assert_allclose(ref["w"].numpy(), [1.2, 1.8, -4.0], rtol=0, atol=1e-15)
    with pytest.raises(KeyError, match="lack 1 reference"):
        ema_update_({"missing": torch.zeros(1)}, policy, 0.9)


def test_ema_schedule_every_k_steps_once_per_version():
    last, due = 0, []
    for v in [1, 2, 3, 4, 5, 6, 6, 7, 8, 9]:
        if ema_due(v, last, every=3):
            due.append(v)
        last = max(last, v)
    assert due == [3, 6, 9]
    assert not ema_due(10, 10, every=10)         # resuming at a saved version does not update twice
    assert ema_due(10, 9, every=10) and not ema_due(11, 10, every=10)


def test_reference_follows_policy_only_when_due(model_path):
    ref = EMAReference(model_path, vision=False, decay=0.99, every=2)
    before = {n: p.detach().clone() for n, p in ref.params.items()}
    policy = {n: (p + 1.0).numpy() for n, p in before.items()}
    policy["lm_head.weight"] = policy["model.embed_tokens.weight"]   # the learner exports the tied head too

    assert ref.observe(policy, 1) is False and ref.version == 1 and ref.updates == 0
    for n, p in ref.params.items():
        torch.testing.assert_close(p, before[n], rtol=0, atol=0)
    assert ref.observe(policy, 2) is True and ref.updates == 1
    for n, p in ref.params.items():   # gap 1.0 everywhere -> exactly (1 - 0.99) * 1.0 = 0.01
        torch.testing.assert_close(p - before[n], torch.full_like(p, 0.01), rtol=0, atol=2e-6)
    # the tied output layer moved once with the embedding, not twice
    torch.testing.assert_close(ref.model.lm_head.weight, ref.params["model.embed_tokens.weight"])
    assert ref.observe(None, 3) is False
    with pytest.raises(ValueError, match="no policy weights"):
        ref.observe(None, 4)


def test_bf16_reference_keeps_an_fp32_average(model_path):
    ref = EMAReference(model_path, vision=False, decay=0.995, every=1, dtype="bfloat16")
    start = {n: t.clone() for n, t in ref.master.items()}
    policy = {n: (t + 0.01).numpy() for n, t in start.items()}
    ref.observe(policy, 1)
    for n, t in ref.master.items():   # 5e-5 steps survive in fp32 (bf16 alone would round most of them away)
        torch.testing.assert_close(t - start[n], torch.full_like(t, 5e-5), rtol=0, atol=1e-6)


def test_token_char_ends_fast_and_fallback_paths_agree(tok):
    text = "<think>Line 3 stops there</think><answer>yes</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoded, ends = token_char_ends(tok, ids + [tok.eos_token_id])
    assert decoded == text and ends[-1] == len(text) and ends[-2] == len(text)
    assert [len(tok.decode(ids[:k + 1])) for k in range(len(ids))] == ends[:-1]
    # a non-canonical split (one token per character) takes the prefix-decoding path
    chars = [tok.convert_tokens_to_ids(c) for c in "yes"]
    assert all(c != tok.unk_token_id for c in chars)
    assert token_char_ends(tok, chars) == ("yes", [1, 2, 3])


def test_answer_token_mask_overlaps_span():
    ends = [3, 8, 11, 12]     # tokens cover [0,3) [3,8) [8,11) [11,12)
    np.testing.assert_array_equal(answer_token_mask(ends, (8, 11)), [False, False, True, False])
    np.testing.assert_array_equal(answer_token_mask(ends, (7, 9)), [False, True, True, False])
    assert not answer_token_mask(ends, (5, 5)).any() and not answer_token_mask(ends, None).any()


def _group(tok, responses: list[str]) -> TrajectoryGroup:
    text = tok.apply_chat_template([{"role": "user", "content": "Is Denbe on Line 3?"}],
                                   add_generation_prompt=True, tokenize=False)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    ids = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in responses]
    samples = [Sample(t, [0.0] * len(t), r, "stop", 0) for t, r in zip(ids, responses)]
    return TrajectoryGroup("g", "p", {}, prompt, samples, 0)


def test_answer_likelihood_is_exp_mean_logprob_of_answer_tokens(model_path, tok):
    from transformers import AutoModelForCausalLM
    ref = EMAReference(model_path, vision=False, batch_size=1)   # two forward batches
    group = _group(tok, ["<think>it is</think><answer>no</answer>", "I do not know",
                         "<think>x</think><answer>17</answer>"])
    assert ref.forward_mode == "shared_prefix"   # auto, with sdpa on the CPU
    p, missing = ref.answer_likelihoods(group)
    assert missing == 1 and np.isnan(p[1])      # no answer span: NaN, not a likelihood

    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    for i in (0, 2):
        s = group.samples[i]
        text, ends = token_char_ends(tok, s.token_ids)
        start = text.index("<answer>") + len("<answer>")
        mask = answer_token_mask(ends, (start, text.index("</answer>")))
        assert tok.decode([t for t, m in zip(s.token_ids, mask) if m]) == ("no", None, "17")[i]
        ids = torch.tensor([group.prompt_ids + s.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(group.prompt_ids) - 1:-1].double()
        lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(s.token_ids)[:, None])[:, 0].numpy()
        np.testing.assert_allclose(p[i], np.exp(lp[mask].mean()), rtol=1e-4)
        assert 0.0 < p[i] < 1.0


def test_shared_prefix_likelihoods_equal_the_padded_forward(model_path, tok):
    group = _group(tok, ["<think>it is not</think><answer>no</answer>", "no answer here at all",
                         "<answer>17</answer>", "<think>a longer line of thought</think><answer>yes</answer>"])
    padded = EMAReference(model_path, vision=False, forward_mode="padded")
    shared = EMAReference(model_path, vision=False)
    assert (padded.forward_mode, shared.forward_mode) == ("padded", "shared_prefix")
    (p_pad, miss_pad), (p_shared, miss_shared) = padded.answer_likelihoods(group), shared.answer_likelihoods(group)
    assert miss_pad == miss_shared == 1 and np.isnan(p_pad[1]) and np.isnan(p_shared[1])
    np.testing.assert_allclose(p_shared, p_pad, rtol=1e-5, atol=0)    # NaNs compare equal
    with pytest.raises(ValueError, match="cannot take"):
        EMAReference(model_path, vision=False, attn_implementation="flash_attention_2", forward_mode="packed")


def test_save_and_load_restore_the_average(model_path, tmp_path):
    ref = EMAReference(model_path, vision=False, decay=0.5, every=1)
    policy = {n: (p.detach() * 0 + 0.25).numpy() for n, p in ref.params.items()}
    ref.observe(policy, 1)
    ref.save(str(tmp_path / "ema"))
    fresh = EMAReference(model_path, vision=False, decay=0.5, every=1)
    assert fresh.load(str(tmp_path / "ema")) == 1 and fresh.updates == 1
    for n, p in fresh.params.items():
        torch.testing.assert_close(p, ref.params[n], rtol=0, atol=0)
    assert not fresh.observe(policy, 1)          # the restored version is not absorbed again


def test_missed_updates_counts_the_due_versions_in_between():
    assert missed_updates(0, 9, every=10) == 0 and missed_updates(0, 10, every=10) == 1
    assert missed_updates(10, 35, every=10) == 2        # 20 and 30
    assert missed_updates(20, 20, every=10) == 0 and missed_updates(30, 20, every=10) == 0


def test_a_restarted_reference_catches_up_exactly_when_the_policy_stood_still(model_path, tmp_path):
    """Restart after the checkpoint at version 2 (every=2, d=0.5); versions 4 and 6 were due since. Caught up
    with the version-6 policy: theta <- d^2 theta + (1 - d^2) theta_6. Where the policy was constant over those
    steps (here: 0.25 everywhere) that is the uninterrupted EMA exactly; k = 2 is reported either way."""
    live = EMAReference(model_path, vision=False, decay=0.5, every=2)
    policy = {n: (p.detach() * 0 + 0.25).numpy() for n, p in live.params.items()}
    live.observe(policy, 2)
    live.save(str(tmp_path / "ema"))
    for v in (3, 4, 5, 6):
        live.observe(policy, v)
    fresh = EMAReference(model_path, vision=False, decay=0.5, every=2)
    fresh.load(str(tmp_path / "ema"))
    start = {n: p.detach().clone() for n, p in fresh.params.items()}
    assert fresh.catch_up(policy, 6) == 2 and fresh.version == 6 and fresh.updates == live.updates == 3
    for n, p in fresh.params.items():
        torch.testing.assert_close(p, 0.25 * start[n] + 0.75 * 0.25, rtol=0, atol=1e-6)
        torch.testing.assert_close(p, live.params[n], rtol=0, atol=1e-6)
    assert fresh.catch_up(policy, 7) == 0 and not fresh.observe(policy, 6)


def test_images_are_re_fed_for_multimodal_prompts(tmp_path):
    """Tiny Qwen2-VL: the likelihood is the model's with the prompt's own image, and a different map changes it."""
    import io

    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from learner.prompting import encode_prompt, load_processor
    from learner.tiny_models import vl_forward_kwargs

    path = resolve_model("tiny-qwen2-vl", cache_dir=CACHE)
    processor = load_processor(path, vision=True)
    tok = processor.tokenizer

    def png(color):
        buf = io.BytesIO()
        Image.new("RGB", (56, 56), color).save(buf, format="PNG")
        return buf.getvalue()

    row = {"id": "q", "type": "torf1", "question": "Is Denbe on Line 3?", "map_text": ""}
    groups = []
    for color in ((200, 30, 30), (20, 200, 240)):
        enc = encode_prompt(processor, {**row, "figure": png(color)}, vision=True)
        ids = tok(r"<think>red</think><answer>yes</answer>", add_special_tokens=False)["input_ids"]
        g = TrajectoryGroup("g", "q", {}, list(enc.input_ids), [Sample(ids, [0.0] * len(ids), "", "stop", 0)], 0,
                            mm_inputs=enc.mm_inputs)
        groups.append(g)
    ref = EMAReference(path, vision=True)
    p_red, p_blue = (ref.answer_likelihoods(g)[0][0] for g in groups)
    assert p_red > 0 and p_blue > 0 and abs(p_red - p_blue) > 1e-7 * p_red
    ref.forward_mode = "padded"        # the image encoded once (shared prefix) or per row (padded): same p
    np.testing.assert_allclose([ref.answer_likelihoods(g)[0][0] for g in groups], [p_red, p_blue], rtol=1e-5)

    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    g = groups[0]
    ids = torch.tensor([g.prompt_ids + g.samples[0].token_ids])
    with torch.no_grad():
        kw = vl_forward_kwargs(model.config, ids, torch.ones_like(ids),
                               pixel_values=torch.as_tensor(g.mm_inputs["pixel_values"]),
                               image_grid_thw=torch.as_tensor(g.mm_inputs["image_grid_thw"]))
        logits = model(**kw).logits[0, len(g.prompt_ids) - 1:-1].double()
    logits[:, ref.blocked_ids] = float("-inf")           # the rollout never samples image placeholders
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(g.samples[0].token_ids)[:, None])[:, 0]
    np.testing.assert_allclose(p_red, float(torch.exp(lp[-2])), rtol=1e-4)   # the one "yes" token
