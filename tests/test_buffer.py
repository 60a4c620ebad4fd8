"""TrajectoryBuffer: bounded capacity, bounded staleness, every drop counted."""
import pytest

from actors.buffer import StalenessQueue


def test_take_returns_oldest_first_and_counts_consumed():
    q = StalenessQueue(capacity=4, max_staleness=1)
    for i, v in enumerate([0, 0, 1]):
        q.put(f"g{i}", v)
    got = q.take(2, learner_version=1)
    assert [e.ref for e in got] == ["g0", "g1"]
    assert q.consumed == 2 and len(q.entries) == 1


def test_too_stale_groups_are_dropped_and_counted():
    q = StalenessQueue(capacity=8, max_staleness=1)
    q.put("v0", 0)
    q.put("v1", 1)
    q.put("v2", 2)
    # learner at version 2: lag 2 > 1 for v0 -> dropped; v1 (lag 1) and v2 (lag 0) stay
    got = q.take(2, learner_version=2)
    assert [e.ref for e in got] == ["v1", "v2"]
    assert q.dropped["stale"] == 1
    # accounting closes: put = consumed + buffered + dropped
    assert q.put_count == q.consumed + len(q.entries) + sum(q.dropped.values())


def test_strictly_on_policy_drops_everything_older():
    q = StalenessQueue(capacity=8, max_staleness=0)
    q.put("old", 3)
    assert q.take(1, learner_version=4) is None
    assert q.dropped["stale"] == 1


def test_not_enough_groups_returns_none_and_keeps_them():
    q = StalenessQueue(capacity=8, max_staleness=0)
    q.put("a", 0)
    assert q.take(2, learner_version=0) is None
    assert len(q.entries) == 1 and q.consumed == 0


def test_full_and_bad_arguments():
    q = StalenessQueue(capacity=2, max_staleness=0)
    q.put("a", 0)
    assert not q.full()
    q.put("b", 0)
    assert q.full()
    with pytest.raises(ValueError):
        StalenessQueue(capacity=0, max_staleness=0)
