"""Batched generation outside training: the hf engine's left-padded batches give what one prompt at a time gives
(greedy decoding on the tiny models), and score_rows with one call per actor returns what the old serial
prompts_per_call chunks returned, in the same order."""
import numpy as np
import pytest
import ray

from cluster.config import load_config
from cluster.evaluate import actor_shares, score_rows
from cluster.tasks import load_task_rows
from learner.model_zoo import resolve_model


def test_actor_shares_are_contiguous_and_near_equal():
    assert actor_shares(5, 2) == [range(0, 3), range(3, 5)]
    assert actor_shares(6, 3) == [range(0, 2), range(2, 4), range(4, 6)]
    assert actor_shares(1, 3) == [range(0, 1)]          # actors without rows get no call
    assert actor_shares(0, 2) == []


def _rows(vision: bool, n: int = 5):
    cfg = load_config(None, ["data.n_networks=2", "data.types=[torf1,torf2,counting1]"])
    rows = load_task_rows(cfg, vision)[:n]
    return cfg, rows


def _rollout(name: str, vision: bool, max_batch: int, max_new_tokens: int = 10):
    from actors.rollout import Rollout
    cfg = load_config(None, [f"rollout.max_new_tokens={max_new_tokens}", f"rollout.hf_max_batch={max_batch}"])
    return Rollout(resolve_model(name), "hf", vision, cfg.rollout.model_dump(), True)


def test_hf_batch_plan_and_left_padding():
    engine = _rollout("tiny-qwen2", False, 4).engine
    assert engine.batches(5, 2, False) == [range(0, 2), range(2, 4), range(4, 5)]   # 4 sequences = 2 prompts x 2
    assert engine.batches(3, 8, False) == [range(0, 1), range(1, 2), range(2, 3)]   # at least one prompt a call
    assert engine.batches(3, 1, True) == [range(0, 1), range(1, 2), range(2, 3)]    # seeded sampling: per prompt
    ids, mask = engine.left_padded([[5, 6, 7], [8]])
    p = engine.pad_id
    assert ids.tolist() == [[5, 6, 7], [p, p, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("name,vision", [("tiny-qwen2", False), ("tiny-qwen2-vl", True)])
def test_hf_batched_greedy_generation_equals_one_prompt_at_a_time(name, vision):
    _, rows = _rows(vision)
    one, batched = _rollout(name, vision, 1), _rollout(name, vision, 8)
    a = one.generate(rows, n=1, temperature=0.0)
    assert len({len(g.prompt_ids) for g in a}) > 1, "prompts of one length would not exercise the padding"
    b = batched.generate(rows, n=1, temperature=0.0)
    assert [g.prompt_id for g in b] == [str(r["id"]) for r in rows]
    for ga, gb in zip(a, b):
        assert ga.prompt_ids == gb.prompt_ids
        (sa,), (sb,) = ga.samples, gb.samples
        assert (sa.token_ids, sa.text, sa.finish_reason) == (sb.token_ids, sb.text, sb.finish_reason)
        np.testing.assert_allclose(sa.logprobs, sb.logprobs, atol=1e-4)


def test_hf_batched_completions_equal_one_prompt_at_a_time():
    _, rows = _rows(False, 3)
    one, batched = _rollout("tiny-qwen2", False, 1), _rollout("tiny-qwen2", False, 8)
    # prefixes of different lengths: different prompt lengths in one batch
    reqs = [{"row": r, "prefix": "step " * k} for k, r in enumerate(rows)]
    kw = dict(n=1, temperature=0.0, max_new_tokens=8, stop=["\n"], top_logprobs=2)
    a, b = one.complete(reqs, **kw), batched.complete(reqs, **kw)
    assert len(b) == 3 and all(len(g) == 1 for g in b)
    for (ca,), (cb,) in zip(a, b):
        assert (ca.text, ca.finished, ca.tokens) == (cb.text, cb.finished, cb.tokens)
        for ta, tb in zip(ca.top_logprobs, cb.top_logprobs):
            assert ta.keys() == tb.keys()
            np.testing.assert_allclose(list(ta.values()), list(tb.values()), atol=1e-4)


def test_hf_batched_sampling_keeps_n_samples_per_prompt_in_order():
    _, rows = _rows(False, 3)
    groups = _rollout("tiny-qwen2", False, 4).generate(rows, n=3, temperature=1.0)   # 1 prompt of 3 per call
    assert [g.prompt_id for g in groups] == [str(r["id"]) for r in rows]
    assert all(len(g.samples) == 3 and all(s.token_ids for s in g.samples) for g in groups)


@pytest.mark.parametrize("engine,actors", [("vllm", 1), ("hf", 2)])
def test_score_rows_batched_equals_serial_chunks(local_ray, engine, actors):
    """Greedy answers and their scores: one call per actor == calls of prompts_per_call rows, row order kept."""
    from cluster.launch import reward_actor, standalone_rollout
    from cluster.tasks import resolve_policy
    cfg = load_config("configs/cpu_tiny.yaml", ["cluster.include_dashboard=false", f"rollout.engine={engine}",
                                                f"rollout.num_actors={actors}", "reward.num_actors=2",
                                                "data.n_networks=2", "rollout.max_new_tokens=12"])
    policy, vision, engine = resolve_policy(cfg)
    rows = load_task_rows(cfg, vision)[:7]
    rollout, env = standalone_rollout(cfg, policy, engine, vision)
    reward = [reward_actor(cfg, env) for _ in range(cfg.reward.num_actors)]
    try:
        batched = score_rows(rollout, reward, rows, 1, 0.0, with_tokens=True)
        chunked = score_rows(rollout, reward, rows, 1, 0.0, with_tokens=True, chunk_size=2)
    finally:
        for a in rollout + reward:
            ray.kill(a, no_restart=True)
    assert [r["prompt_id"] for r in batched] == [str(r["id"]) for r in rows]
    assert batched == chunked
