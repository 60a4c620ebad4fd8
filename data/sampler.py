"""PromptSampler: shuffled passes over the task rows, resumable from a small state dict."""
from __future__ import annotations

import threading

import numpy as np


class PromptSampler:
    """Shuffled passes over a pool of rows: all rows, or only the rows of some question types (set_types).

    Pass e over a pool of n rows serves pool[default_rng([seed, e]).permutation(n)]; the pass counter `epoch`, the
    cursor `position` and the pool's types are the whole state, so a sampler rebuilt from state_dict() serves the
    same rows. next() runs in the feeder thread and set_types() in the controller thread, hence the lock.
    """

    def __init__(self, rows: list[dict], seed: int = 0):
        if not rows:
            raise ValueError("no task rows to sample from")
        self.rows = rows
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self.types: list[str] | None = None           # None = every row
        self._lock = threading.Lock()
        self._pool = self._pool_for(None)
        self._order = self._permutation()

    def _pool_for(self, types: list[str] | None) -> np.ndarray:
        if types is None:                              # arange keeps the unrestricted order bit-identical
            return np.arange(len(self.rows))
        wanted = set(types)
        pool = [i for i, row in enumerate(self.rows) if str(row.get("type", "")).lower() in wanted]
        if not pool:
            raise ValueError(f"no rows of type(s) {', '.join(types)} among the {len(self.rows)} task rows")
        return np.asarray(pool)

    def _permutation(self) -> np.ndarray:
        return self._pool[np.random.default_rng([self.seed, self.epoch]).permutation(len(self._pool))]

    def set_types(self, types: list[str] | None) -> None:
        """Serve only rows whose lower-cased "type" is in `types` (None = all rows), from a fresh shuffled pass
        (epoch + 1, position 0). Asking for the types already in force is a no-op, so a controller may call this
        idempotently (e.g. after a resume) without disturbing the stream. ValueError if no row has those types."""
        if types is not None and not types:
            raise ValueError("set_types([]) would serve nothing; pass None to serve every row")
        new = None if types is None else sorted({str(t).lower() for t in types})
        with self._lock:
            if new == self.types:
                return
            pool = self._pool_for(new)                 # raises before any state changes
            self.types, self._pool = new, pool
            self.epoch += 1
            self.position = 0
            self._order = self._permutation()

    def next(self, k: int) -> list[dict]:
        out = []
        with self._lock:
            for _ in range(k):
                if self.position >= len(self._order):
                    self.epoch += 1
                    self.position = 0
                    self._order = self._permutation()
                out.append(self.rows[int(self._order[self.position])])
                self.position += 1
        return out

    def state_dict(self) -> dict:
        with self._lock:
            types = None if self.types is None else list(self.types)
            return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "types": types}

    def load_state_dict(self, state: dict) -> None:
        types = state.get("types")                     # absent in checkpoints written before set_types existed
        with self._lock:
            self._pool = self._pool_for(types)
            self.seed, self.epoch, self.position, self.types = state["seed"], state["epoch"], state["position"], types
            self._order = self._permutation()
