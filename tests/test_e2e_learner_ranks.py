"""The learner group in Ray workers: the same batch gives the same update on 1 rank and on 2 ranks (the README's
claim that loss normalisation is exact over the global batch), and an algorithm from outside the package trains
a step once its module is named in `algorithm.plugins`."""
import os

import numpy as np
import pytest
import ray

from cluster.config import load_config
from cluster.launch import worker_env
from cluster.tasks import resolve_policy
from learner.engine import LearnerSpec
from learner_fixtures import scored_groups

pytestmark = pytest.mark.slow

PLUGIN = '''
import numpy as np
from learner.algorithms.base import Advantages, Algorithm, register_algorithm


@register_algorithm
class SignAdvantage(Algorithm):
    """A toy algorithm: A_i = sign(r_i - mean_g r), PPO's clipped loss."""
    name = "toy_sign"

    def advantages(self, groups, rewards):
        return Advantages(np.sign(rewards - rewards.mean(axis=1, keepdims=True)), metrics={"toy/groups": len(groups)})
'''


def learner_group(cfg, workers: int, extra_path: str | None = None):
    from actors.learner_worker import LearnerGroup, LearnerWorker
    env = worker_env(False)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([extra_path, os.environ.get("PYTHONPATH", "")])
    actors = [LearnerWorker.options(num_cpus=1, runtime_env={"env_vars": env}).remote(i, workers)
              for i in range(workers)]
    path, _, _ = resolve_policy(cfg)
    spec = LearnerSpec(path, False, cfg.algorithm, cfg.learner, 1.0, 16, 4, 4)
    return LearnerGroup(actors, spec, backend="gloo"), actors


def one_step(cfg, workers: int, batch, extra_path=None):
    group, actors = learner_group(cfg, workers, extra_path)
    try:
        before = ray.get(group.export_weights()["ref"][0])
        stats = group.step([[ray.put(g)] for g in batch])
        after = ray.get(group.export_weights()["ref"][0])
        group.shutdown()
        return stats, {k: after[k] - before[k] for k in before}
    finally:
        for a in actors:
            ray.kill(a)


def vocab(cfg) -> int:
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(resolve_policy(cfg)[0]).vocab_size


def test_one_rank_and_two_ranks_give_the_same_update(local_ray):
    common = ["learner.lr=1.0", "learner.adam_eps=1.0", "learner.weight_decay=0.0", "learner.max_grad_norm=1e9"]
    one = load_config("configs/cpu_tiny.yaml", [*common, "learner.micro_batch_size=16"])
    two = load_config("configs/cpu_tiny.yaml", [*common, "learner.micro_batch_size=4", "learner.num_workers=2"])
    batch = scored_groups(4, 4, vocab(one), seed=3)
    _, d1 = one_step(one, 1, batch)
    _, d2 = one_step(two, 2, batch)
    assert max(np.abs(v).max() for v in d1.values()) > 1e-4
    for k in d1:
        np.testing.assert_allclose(d2[k], d1[k], atol=1e-6, err_msg=k)


def test_an_algorithm_from_outside_the_package_trains_in_a_ray_worker(local_ray, tmp_path, monkeypatch):
    (tmp_path / "toy_waypoint_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config("configs/cpu_tiny.yaml", ["algorithm.plugins=[toy_waypoint_plugin]",
                                                "algorithm.advantage=toy_sign", "learner.lr=1e-2"])
    batch = scored_groups(4, 4, vocab(cfg), seed=4)
    stats, delta = one_step(cfg, 1, batch, extra_path=str(tmp_path))
    assert stats["toy/groups"] == 4                       # the plugin's advantages ran in the worker
    assert stats["adv/std"] == pytest.approx(1.0)         # every advantage is +-1 (rewards vary in each group)
    assert max(np.abs(v).max() for v in delta.values()) > 0


def test_a_dead_learner_rank_is_named_at_once(local_ray):
    from actors.learner_worker import LearnerDiedError
    cfg = load_config("configs/cpu_tiny.yaml", ["learner.micro_batch_size=4", "learner.num_workers=2"])
    group, actors = learner_group(cfg, 2)
    try:
        ray.kill(actors[1])
        batch = scored_groups(4, 4, vocab(cfg), seed=6)
        with pytest.raises(LearnerDiedError, match="learner rank 1 of 2 died"):
            group.step([[ray.put(g)] for g in batch])
    finally:
        for a in actors:
            ray.kill(a)


def test_a_lora_learner_syncs_merged_weights_into_the_rollout_engine(local_ray):
    """LoRA over Ray: after a step and an object-store publish, the vLLM rollout engine's log-probs equal the
    learner's own (merged W + (alpha / r) B A under the base names) to 1e-4, and they moved."""
    from actors.weight_sync import ObjectStoreTransport
    from cluster.launch import rollout_actor
    from learner.forward import Segment, response_logprobs
    cfg = load_config("configs/cpu_tiny.yaml", ["model.lora={r: 4, alpha: 8.0}", "learner.lr=1e-2",
                                                "rollout.engine=vllm"])
    path, _, _ = resolve_policy(cfg)
    rollout = rollout_actor(cfg, path, "vllm", False, 0, {"env_vars": worker_env(False)})
    group, actors = learner_group(cfg, 1)
    try:
        batch = scored_groups(4, 4, vocab(cfg), seed=11)
        probe = (batch[0].prompt_ids, batch[0].samples[0].token_ids)
        before = ray.get(rollout.sequence_logprobs.remote(*probe))
        group.step([[ray.put(g)] for g in batch])
        sync = ObjectStoreTransport().publish(group, [rollout], version=1)
        state = ray.get(group.export_weights()["ref"][0])
        assert not any("lora_" in k for k in state) and sync["weight_bytes"] > 0
        after = np.asarray(ray.get(rollout.sequence_logprobs.remote(*probe)))
        from transformers import AutoModelForCausalLM
        import torch
        model = AutoModelForCausalLM.from_pretrained(path)
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
        with torch.no_grad():
            learner_lp = response_logprobs(model.eval(), [Segment(*probe[:1], [probe[1]])], "padded", 1.0, False,
                                           0)[0, :len(probe[1])].numpy()
        np.testing.assert_allclose(after, learner_lp, atol=1e-4)
        assert np.abs(after - np.asarray(before)).max() > 1e-3
        group.shutdown()
    finally:
        for a in [*actors, rollout]:
            ray.kill(a)
