"""Concurrent start-up: wait_started waits for every starting actor and names the first one that fails."""
import pytest
import ray

from cluster.launch import wait_started


@ray.remote(num_cpus=0)
class Starter:
    def __init__(self, fail: bool):
        if fail:
            raise ValueError("no such model: /nowhere")

    def ready(self) -> bool:
        return True


def test_wait_started_returns_when_all_are_up(local_ray):
    actors = [Starter.remote(False) for _ in range(3)]
    wait_started([(f"ok-{i}", a.ready.remote()) for i, a in enumerate(actors)])
    assert ray.get([a.ready.remote() for a in actors]) == [True] * 3


def test_wait_started_names_the_actor_that_failed(local_ray):
    good, bad = Starter.remote(False), Starter.remote(True)
    with pytest.raises(RuntimeError, match=r"(?s)start-up of run/rollout-1 failed: .*no such model: /nowhere"):
        wait_started([("run/rollout-0", good.ready.remote()), ("run/rollout-1", bad.ready.remote())])
