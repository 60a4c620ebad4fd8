"""ReferenceActor: GRPO-CARE's EMA reference model as a reward-stage actor.

It sits after the reward actor on a group's route (rollout -> reward -> reference -> buffer), so reference
forwards run concurrently with generation and learning. It receives every published weight set like a
rollout actor (`load_weights`) but only fetches it when an EMA step is due.
"""
from __future__ import annotations

import time

import ray

from data.trajectory import TrajectoryGroup
from learner.reference import EMAReference, ema_due


@ray.remote
class ReferenceActor:
    def __init__(self, model_path: str, vision: bool, care, dtype: str = "float32", torch_threads: int = 1,
                 attn_implementation: str = "sdpa"):
        """`care`: the algorithm.care section (learner.algorithms.care.CareConfig)."""
        self.ref = EMAReference(model_path, vision, decay=care.ema_decay, every=care.ema_every,
                                batch_size=care.batch_size, dtype=dtype, torch_threads=torch_threads,
                                attn_implementation=attn_implementation)
        self.scored = 0
        self.missing_spans = 0
        self.approximated_updates = 0   # EMA steps replayed with later weights after a restart (catch_up)

    def score(self, group: TrajectoryGroup, status: dict) -> tuple[TrajectoryGroup, dict]:
        """Call with `num_returns=2` on a reward actor's (group, status): adds `group.answer_likelihood`."""
        t0 = time.perf_counter()
        p, missing = self.ref.answer_likelihoods(group)
        group.answer_likelihood = p
        group.timing["reference_s"] = time.perf_counter() - t0
        self.scored += group.size
        self.missing_spans += missing
        return group, {**status, "reference_s": group.timing["reference_s"], "reference_version": self.ref.version}

    def load_weights(self, wrapped_state_ref: list, version: int) -> float:
        """Same interface as RolloutActor.load_weights; the weights are fetched only for a due EMA step."""
        t0 = time.perf_counter()
        due = ema_due(version, self.ref.version, self.ref.every)
        self.ref.observe(ray.get(wrapped_state_ref[0]) if due else None, version)
        return time.perf_counter() - t0

    # ---- the collective weight transport: receive every broadcast, use it when an EMA step is due ------
    def weight_ranks(self) -> int:
        return 1

    def join_weight_group(self, addr: str, port: int, rank: int, names: list[str], backend: str, timeout_s: float,
                          specs: list, dtype: str, bucket_bytes: int) -> None:
        from actors.collective import Member
        self.member = Member(addr, port, rank, names, backend, timeout_s, specs, dtype, bucket_bytes)

    def receive_weights(self, version: int) -> float:
        t0 = time.perf_counter()
        state = dict(self.member.pairs(version))   # every member takes part in every broadcast, due or not
        self.ref.observe(state if ema_due(version, self.ref.version, self.ref.every) else None, version)
        return time.perf_counter() - t0

    def save(self, path: str) -> None:
        self.ref.save(path)

    def load(self, path: str) -> int:
        return self.ref.load(path)

    def restore(self, checkpoint_dir: str | None, wrapped_state_ref: list, version: int) -> dict:
        """A replacement's EMA state: the last checkpoint's (or the initial policy, the EMA's start, when there
        is none), then the steps due since, caught up with the policy weights of `version`."""
        restored = self.ref.load(checkpoint_dir) if checkpoint_dir else 0
        k = self.ref.catch_up(ray.get(wrapped_state_ref[0]), version) if version > restored else 0
        self.approximated_updates += k
        return {"restored_version": restored, "approximated_updates": k}

    def stats(self) -> dict:
        return {"ema_updates": self.ref.updates, "ema_version": self.ref.version,
                "ema_approximated_updates": self.approximated_updates,
                "samples_scored": self.scored, "answer_span_missing": self.missing_spans}

    def ready(self) -> bool:
        return True
