"""RolloutFeeder with misbehaving actors: failures are counted, regenerated, and the run goes on."""
import os
import time

import pytest
import ray

from actors.buffer import TrajectoryBuffer
from actors.reward import RewardActor
from cluster.feeder import RolloutFeeder
from data.sampler import PromptSampler
from data.trajectory import Sample, TrajectoryGroup

ROW = {"id": "q", "type": "torf1", "answer": 1, "difficulty_city": "easy", "question_transfer_count": 0,
       "station_1": "", "station_2": "", "json": {"Line 1": ["A", "B"]}}


@ray.remote
class FakeRollout:
    """Answers `\\boxed{yes}`; mode 'fail_once' raises on its first call, 'die' exits the process on it."""

    def __init__(self, mode: str = "ok"):
        self.mode, self.calls = mode, 0

    def generate(self, rows, seeds=None):
        self.calls += 1
        if self.mode == "die":
            os._exit(1)
        if self.mode == "fail_once" and self.calls == 1:
            raise RuntimeError("engine hiccup")
        groups = [TrajectoryGroup("g", r["id"], r, [1], [Sample([7], [-0.5], "\\boxed{yes}", "stop", 0)] * 2, 0)
                  for r in rows]
        return groups[0] if len(groups) == 1 else tuple(groups)

    def ready(self):
        return True


@ray.remote
class ReferenceActor:   # the real class's name: the feeder tells failed stages apart by the task name
    """A fake CARE reference stage: 'fail_once' raises on its first group, 'die' exits the process on it."""

    def __init__(self, mode: str):
        self.mode, self.calls = mode, 0

    def score(self, group, status):
        self.calls += 1
        if self.mode == "die":
            os._exit(1)
        if self.mode == "fail_once" and self.calls == 1:
            raise RuntimeError("reference forward failed")
        group.answer_likelihood = [0.5] * group.size
        return group, status

    def ready(self):
        return True


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def run_feeder(rollouts, total=6, reference=()):
    buffer = TrajectoryBuffer.remote(capacity=16, max_staleness=0)
    reward = RewardActor.remote("map_vqa", {}, 30.0)
    feeder = RolloutFeeder(PromptSampler([ROW]), rollouts, [reward], buffer, groups_per_step=total,
                           max_staleness=0, total_groups=total, prompts_per_call=2, reference_actors=reference)
    feeder.start()
    got = ray.get(buffer.take.remote(total, 0, 120))
    feeder.stop()
    return feeder, got, ray.get(buffer.stats.remote())


def test_failed_generation_is_counted_and_regenerated(local_ray):
    feeder, got, buf = run_feeder([FakeRollout.remote("fail_once")])
    s = feeder.stats()
    assert len(got) == 6
    assert s["dropped"] == {"rollout_error": 2}          # the first call had 2 groups
    assert s["generated"] == 8 and s["delivered"] == 6   # generated = delivered + dropped
    assert feeder.error is None


def test_dead_rollout_actor_leaves_rotation_and_the_run_goes_on(local_ray):
    feeder, got, buf = run_feeder([FakeRollout.remote("die"), FakeRollout.remote("ok")])
    s = feeder.stats()
    assert len(got) == 6 and s["dead_rollout_actors"] == 1
    assert s["dropped"]["rollout_dead"] >= 1
    assert s["generated"] == s["delivered"] + sum(s["dropped"].values())
    assert feeder.error is None


def test_all_rollout_actors_dead_is_a_clear_error(local_ray):
    buffer = TrajectoryBuffer.remote(capacity=16, max_staleness=0)
    reward = RewardActor.remote("map_vqa", {}, 30.0)
    feeder = RolloutFeeder(PromptSampler([ROW]), [FakeRollout.remote("die")], [reward], buffer, 2, 0, 2, 2)
    feeder.start()
    deadline = time.time() + 120
    while feeder.error is None and time.time() < deadline:
        time.sleep(0.2)
    feeder.stop(drain=False)
    assert feeder.error and "every rollout actor died" in feeder.error


def test_failed_reference_is_counted_and_regenerated(local_ray):
    feeder, got, _ = run_feeder([FakeRollout.remote()], reference=[ReferenceActor.remote("fail_once")])
    s = feeder.stats()
    assert len(got) == 6 and s["dropped"] == {"reference_error": 1} and feeder.error is None
    groups = ray.get([entry[0][0] for entry in got])   # entries are [[group ref], version]
    assert all(list(g.answer_likelihood) == [0.5, 0.5] and g.rewards["total"][0] > 0 for g in groups)


def test_dead_reference_actor_stops_the_run_with_a_clear_error(local_ray):
    buffer = TrajectoryBuffer.remote(capacity=16, max_staleness=0)
    reward = RewardActor.remote("map_vqa", {}, 30.0)
    feeder = RolloutFeeder(PromptSampler([ROW]), [FakeRollout.remote()], [reward], buffer, 2, 0, 2, 2,
                           reference_actors=[ReferenceActor.remote("die")])
    feeder.start()
    deadline = time.time() + 120
    while feeder.error is None and time.time() < deadline:
        time.sleep(0.2)
    feeder.stop(drain=False)
    assert feeder.error and "the reference actor died" in feeder.error
    assert feeder.stats()["dropped"].get("reference_dead", 0) >= 1


def test_buffer_put_many_keeps_order_versions_and_back_pressure(local_ray):
    buffer = TrajectoryBuffer.remote(capacity=2, max_staleness=1)
    refs = [ray.put(f"group-{i}") for i in range(3)]
    # three groups into room for two: the call waits until a take makes room for the third
    pending = buffer.put_many.remote(refs, [0, 1, 1])
    got = ray.get(buffer.take.remote(2, 1, 60))
    assert [ray.get(w[0]) for w, _ in got] == ["group-0", "group-1"] and [v for _, v in got] == [0, 1]
    assert ray.get(pending, timeout=60) == 1
    last = ray.get(buffer.take.remote(1, 2, 60))
    assert ray.get(last[0][0][0]) == "group-2"
    stats = ray.get(buffer.stats.remote())
    assert stats["buffer_put"] == 3 and stats["buffer_consumed"] == 3 and stats["buffer_size"] == 0
    with pytest.raises(ray.exceptions.RayTaskError, match="2 groups but 1 versions"):
        ray.get(buffer.put_many.remote(refs[:2], [0]))


def test_groups_of_a_dead_reference_wait_for_its_replacement_and_are_rescored(local_ray):
    """With the controller's restarts on (`revived`), a dead reference parks its groups, nothing is dropped,
    and `install` sends them to the replacement; the accounting closes."""
    buffer = TrajectoryBuffer.remote(capacity=16, max_staleness=0)
    reward = RewardActor.remote("map_vqa", {}, 30.0)
    pool = [ReferenceActor.remote("die")]
    feeder = RolloutFeeder(PromptSampler([ROW]), [FakeRollout.remote()], [reward], buffer, 4, 0, 4, 2,
                           reference_actors=pool, revived=("rollout", "reference"))
    feeder.start()
    deadline = time.time() + 120
    while not feeder.dead_consumers()["reference"] and time.time() < deadline:
        time.sleep(0.2)
    assert feeder.dead_consumers() == {"rollout": [], "reference": [0]} and feeder.error is None
    with pytest.raises(TimeoutError, match="waiting for a dead reference"):
        feeder.pause(timeout_s=1)        # a checkpoint now would lose the parked groups: refused
    feeder.resume()
    feeder.install("reference", 0, ReferenceActor.remote("ok"))
    got = ray.get(buffer.take.remote(4, 0, 120))
    feeder.stop()
    s = feeder.stats()
    assert len(got) == 4 and s["dropped"] == {} and s["restarts"] == {"reference": 1}
    assert s["rerouted"]["reference"] >= 1 and s["generated"] == s["delivered"] == 4
    assert feeder.dead_consumers() == {"rollout": [], "reference": []}
    assert all(list(ray.get(e[0][0]).answer_likelihood) == [0.5, 0.5] for e in got)


def test_a_dead_rollout_actor_is_reported_and_its_replacement_serves(local_ray):
    """The only rollout actor dies: with restarts on, no error; the replacement installed in its slot (the
    caller's list) generates the rest, and the lost groups are regenerated, counted as rollout_dead."""
    buffer = TrajectoryBuffer.remote(capacity=16, max_staleness=0)
    reward = RewardActor.remote("map_vqa", {}, 30.0)
    rollouts = [FakeRollout.remote("die")]
    feeder = RolloutFeeder(PromptSampler([ROW]), rollouts, [reward], buffer, 4, 0, 4, 2, revived=("rollout",))
    feeder.start()
    deadline = time.time() + 120
    while not feeder.dead_consumers()["rollout"] and time.time() < deadline:
        time.sleep(0.2)
    assert feeder.dead_consumers()["rollout"] == [0] and feeder.error is None
    replacement = FakeRollout.remote("ok")
    feeder.install("rollout", 0, replacement)
    assert rollouts[0] is replacement
    got = ray.get(buffer.take.remote(4, 0, 120))
    feeder.stop()
    s = feeder.stats()
    assert len(got) == 4 and s["restarts"] == {"rollout": 1} and s["dropped"]["rollout_dead"] >= 2
    assert s["generated"] == s["delivered"] + sum(s["dropped"].values())


def test_publish_reports_a_dead_consumer_instead_of_failing(local_ray):
    from actors.weight_sync import ObjectStoreTransport

    @ray.remote
    class Consumer:
        def load_weights(self, ref, version):
            return 0.01

    class Learner:
        def export_weights(self):
            return {"ref": [ray.put({"w": 1})], "bytes": 8}

    alive, dead = Consumer.remote(), Consumer.remote()
    ray.kill(dead, no_restart=True)
    out = ObjectStoreTransport(timeout_s=60).publish(Learner(), [alive, dead], version=3)
    assert out["dead"] == [dead] and out["weight_load_s_max"] == 0.01 and out["version"] == 3
