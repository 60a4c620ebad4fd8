"""TrajectoryBuffer: object-store references to scored groups, bounded in size and in staleness.

The buffer never touches trajectory data: it holds `ObjectRef`s and each group's policy version. Producers
block when it is full (back-pressure on rollout); `take` drops groups whose version lags the learner by more
than `max_staleness` and counts them, so generated = consumed + buffered + dropped always closes.
"""
from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass

import ray


@dataclass
class Entry:
    ref: object        # ray.ObjectRef of a scored TrajectoryGroup
    version: int


class StalenessQueue:
    """The buffer's bookkeeping, free of Ray and asyncio so it can be tested directly."""

    def __init__(self, capacity: int, max_staleness: int):
        if capacity < 1 or max_staleness < 0:
            raise ValueError("capacity must be >= 1 and max_staleness >= 0")
        self.capacity = capacity
        self.max_staleness = max_staleness
        self.entries: deque[Entry] = deque()
        self.put_count = 0
        self.consumed = 0
        self.dropped: Counter[str] = Counter()

    def full(self) -> bool:
        return len(self.entries) >= self.capacity

    def put(self, ref, version: int) -> None:
        self.entries.append(Entry(ref, version))
        self.put_count += 1

    def drop_stale(self, learner_version: int) -> int:
        keep = deque(e for e in self.entries if learner_version - e.version <= self.max_staleness)
        n = len(self.entries) - len(keep)
        self.entries = keep
        self.dropped["stale"] += n
        return n

    def take(self, n: int, learner_version: int) -> list[Entry] | None:
        """The n oldest fresh-enough entries, or None when fewer than n are available."""
        self.drop_stale(learner_version)
        if len(self.entries) < n:
            return None
        out = [self.entries.popleft() for _ in range(n)]
        self.consumed += n
        return out

    def state_dict(self) -> dict:
        """Counters only; the pending groups themselves are saved by the checkpoint from `entries`."""
        return {"put_count": self.put_count, "consumed": self.consumed, "dropped": dict(self.dropped)}

    def load_state_dict(self, state: dict) -> None:
        self.put_count, self.consumed = state["put_count"], state["consumed"]
        self.dropped = Counter(state["dropped"])

    def count_drop(self, reason: str, n: int = 1) -> None:
        """Groups that never reached the buffer (a dead actor, a failed reward) are counted here too."""
        self.dropped[reason] += n

    def stats(self) -> dict:
        versions = [e.version for e in self.entries]
        return {
            "buffer_size": len(self.entries),
            "buffer_put": self.put_count,
            "buffer_consumed": self.consumed,
            "buffer_dropped": dict(self.dropped),
            "buffer_oldest_version": min(versions) if versions else None,
        }


@ray.remote(num_cpus=0)
class TrajectoryBuffer:
    """Async actor: `put` waits while full, `take` waits until enough fresh groups are in."""

    def __init__(self, capacity: int, max_staleness: int):
        self.q = StalenessQueue(capacity, max_staleness)
        self._changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:          # created inside the actor's event loop
            self._changed = asyncio.Condition()
        return self._changed

    async def put(self, wrapped_ref: list, version: int, force: bool = False) -> int:
        """`wrapped_ref` is `[ref]` so Ray passes the reference, not the value. `force` skips capacity
        (used when draining in-flight groups at shutdown, so none is lost)."""
        cond = self._cond()
        async with cond:
            if not force:
                await cond.wait_for(lambda: not self.q.full())
            self.q.put(wrapped_ref[0], version)
            cond.notify_all()
            return len(self.q.entries)

    async def put_many(self, refs: list, versions: list[int], force: bool = False) -> int:
        """`put` for several groups in one call (the feeder collects a generate call's groups together);
        `refs` is a list of references, so Ray passes them unresolved. Each waits for room as `put` does."""
        if len(refs) != len(versions):
            raise ValueError(f"{len(refs)} groups but {len(versions)} versions")
        cond = self._cond()
        async with cond:
            for ref, version in zip(refs, versions):
                if not force:
                    await cond.wait_for(lambda: not self.q.full())
                self.q.put(ref, version)
                cond.notify_all()
            return len(self.q.entries)

    async def take(self, n: int, learner_version: int, timeout_s: float | None = None) -> list:
        """Returns [[ref, version], ...] of n groups; raises TimeoutError after timeout_s."""
        cond = self._cond()
        result: list[Entry] = []

        def ready() -> bool:
            got = self.q.take(n, learner_version)
            if got is not None:
                result.extend(got)
                return True
            return False

        async with cond:
            await asyncio.wait_for(cond.wait_for(ready), timeout_s)
            cond.notify_all()
        return [[[e.ref], e.version] for e in result]

    def count_drop(self, reason: str, n: int = 1) -> None:
        self.q.count_drop(reason, n)

    def snapshot(self) -> dict:
        """For a checkpoint: counters plus [[ref], version] of every pending group (refs stay valid)."""
        return {"state": self.q.state_dict(), "pending": [[[e.ref], e.version] for e in self.q.entries]}

    async def restore(self, state: dict, pending: list) -> None:
        """Counters from a checkpoint and its pending groups (as fresh [ref], version pairs)."""
        self.q.load_state_dict(state)
        for wrapped, version in pending:
            self.q.entries.append(Entry(wrapped[0], version))
        cond = self._cond()
        async with cond:
            cond.notify_all()

    def stats(self) -> dict:
        return self.q.stats()
