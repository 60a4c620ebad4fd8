"""PromptSampler: shuffled passes over the task rows, resumable from a small state dict."""
from __future__ import annotations

import numpy as np


class PromptSampler:
    def __init__(self, rows: list[dict], seed: int = 0):
        if not rows:
            raise ValueError("no task rows to sample from")
        self.rows = rows
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))

    def next(self, k: int) -> list[dict]:
        out = []
        for _ in range(k):
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._permutation()
            out.append(self.rows[int(self._order[self.position])])
            self.position += 1
        return out

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._permutation()
