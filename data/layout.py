"""Schematic station positions for networks that have none (real tables carry no coordinates).

Start: line i is laid along a straight spoke at angle pi*i/N through the centre, a shared station at the
mean of its placements. Then a fixed number of Fruchterman-Reingold steps (numpy, no randomness beyond a
fixed-seed jitter) pull neighbours together and push everything else apart, with a mild pull to the centre
in place of a frame. Same table, same positions. Real cities with a real map image never use this.
"""
from __future__ import annotations

import math

import numpy as np

from data.network import TransitNetwork


def _initial(net: TransitNetwork, index: dict[str, int]) -> np.ndarray:
    total = np.zeros((len(index), 2))
    count = np.zeros(len(index))
    n_lines = max(len(net.lines), 1)
    for i, stops in enumerate(net.lines.values()):
        angle = math.pi * i / n_lines
        direction = np.array([math.cos(angle), math.sin(angle)])
        for j, stop in enumerate(stops):
            t = j / max(len(stops) - 1, 1) - 0.5
            total[index[stop]] += t * direction
            count[index[stop]] += 1
    pos = total / np.maximum(count, 1)[:, None]
    # Break exact ties (two spokes crossing at unshared stations) the same way every time.
    return pos + np.random.default_rng(0).normal(scale=1e-3, size=pos.shape)


def _edges(net: TransitNetwork, index: dict[str, int]) -> np.ndarray:
    pairs = {tuple(sorted((index[a], index[b]))) for stops in net.lines.values() for a, b in zip(stops, stops[1:])}
    return np.array(sorted(p for p in pairs if p[0] != p[1]), dtype=int).reshape(-1, 2)


def schematic_positions(net: TransitNetwork, iterations: int = 200,
                        gravity: float = 0.05) -> dict[str, tuple[float, float]]:
    """Station -> (x, y), arbitrary scale (the renderer fits it to the canvas)."""
    stations = net.stations()
    index = {s: i for i, s in enumerate(stations)}
    pos = _initial(net, index)
    edges = _edges(net, index)
    k = 1.0 / math.sqrt(max(len(stations), 1))  # ideal edge length for a unit-area drawing
    step = 0.1
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.maximum(np.linalg.norm(delta, axis=2), 1e-4)
        disp = (delta / dist[..., None] * (k * k / dist)[..., None]).sum(axis=1)
        if len(edges):
            d = pos[edges[:, 0]] - pos[edges[:, 1]]
            length = np.maximum(np.linalg.norm(d, axis=1), 1e-4)
            pull = d / length[:, None] * (length * length / k)[:, None]
            np.add.at(disp, edges[:, 0], -pull)
            np.add.at(disp, edges[:, 1], pull)
        # Mild pull to the centre instead of a hard frame: a frame piles stations onto its edges.
        disp -= gravity * (pos - pos.mean(axis=0)) / k
        norm = np.maximum(np.linalg.norm(disp, axis=1), 1e-9)
        pos += disp / norm[:, None] * np.minimum(norm, step)[:, None]
        step = max(step * 0.98, 0.002)
    return {s: (float(pos[i, 0]), float(pos[i, 1])) for s, i in index.items()}
