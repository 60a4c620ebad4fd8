"""Random synthetic transit networks laid out on a grid.

Each line is a self-avoiding walk on a square grid (unit steps in 8 directions, gentle turns preferred);
every line after the first passes through a station of an earlier line, so the network is connected and has
at least one transfer station per extra line. Walks never reuse a track segment of another line, so every
line stays visible when drawn. Station names are two syllables from `SYLLABLES` ("Kimo", "Darte"), short
and tokenizer-friendly. Everything is drawn from the numpy Generator passed in: same seed, same network.
"""
from __future__ import annotations

import numpy as np

from data.network import SYNTHETIC_THRESHOLDS, TransitNetwork, city_difficulty

SYLLABLES = (
    "ba", "be", "bo", "da", "de", "di", "do", "fa", "fe", "fi", "ga", "go", "ka", "ke", "ki", "ko",
    "la", "le", "li", "lo", "ma", "me", "mi", "mo", "na", "ne", "ni", "no", "pa", "pe", "po", "ra",
    "re", "ri", "sa", "se", "si", "so", "ta", "te", "ti", "to", "va", "ve", "vi", "za", "zo",
    "bar", "den", "kin", "mar", "nor", "sel", "tan", "ven",
)
# Names that would read as something else in a question ("Is Line on Line 2?").
_RESERVED = {"Line", "Lino", "Nono"}
STATION_NAMES = tuple(
    n for n in dict.fromkeys((a + b).capitalize() for a in SYLLABLES for b in SYLLABLES) if n not in _RESERVED
)

_DIRS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
# Relative weight of a step by how far it turns from the previous direction (in 45-degree units).
_TURN_WEIGHT = {0: 6.0, 1: 2.0, 2: 0.5}


def _pick_dir(rng, point, prev, size, visited, used):
    """A direction index for the next step, or None when the walk is stuck."""
    options, weights = [], []
    for d, (dx, dy) in enumerate(_DIRS):
        nxt = (point[0] + dx, point[1] + dy)
        if not (0 <= nxt[0] < size and 0 <= nxt[1] < size) or nxt in visited:
            continue
        if frozenset((point, nxt)) in used:
            continue
        turn = 0 if prev is None else min((d - prev) % 8, (prev - d) % 8)
        if turn in _TURN_WEIGHT:
            options.append(d)
            weights.append(_TURN_WEIGHT[turn])
    if not options:
        return None
    p = np.asarray(weights) / sum(weights)
    return options[int(rng.choice(len(options), p=p))]


def _walk(rng, start, steps, prev, size, visited, used):
    """Points after `start` of a self-avoiding walk of `steps` steps, or None if stuck."""
    out, point = [], start
    for _ in range(steps):
        d = _pick_dir(rng, point, prev, size, visited, used)
        if d is None:
            return None
        point = (point[0] + _DIRS[d][0], point[1] + _DIRS[d][1])
        visited.add(point)
        out.append(point)
        prev = d
    return out


def _line_through(rng, anchor, length, size, used):
    """A walk of `length` points containing `anchor` at a random index, or None if stuck."""
    k = int(rng.integers(0, length))
    visited = {anchor}
    forward = _walk(rng, anchor, length - 1 - k, None, size, visited, used)
    if forward is None:
        return None
    # Continue straight through the anchor: the backward half prefers the opposite heading.
    if forward:
        dx, dy = forward[0][0] - anchor[0], forward[0][1] - anchor[1]
        back_prev = _DIRS.index((-dx, -dy))
    else:
        back_prev = None
    backward = _walk(rng, anchor, k, back_prev, size, visited, used)
    if backward is None:
        return None
    return backward[::-1] + [anchor] + forward


def _layout(rng, lengths, size, tries_per_line=30):
    """Grid paths for all lines, or None if some line could not be placed."""
    paths, used = [], set()
    for i, length in enumerate(lengths):
        for _ in range(tries_per_line):
            if i == 0:
                anchor = (int(rng.integers(1, size - 1)), int(rng.integers(1, size - 1)))
            else:
                pool = sorted({p for path in paths for p in path})
                anchor = pool[int(rng.integers(0, len(pool)))]
            path = _line_through(rng, anchor, int(length), size, used)
            if path is not None:
                break
        else:
            return None
        paths.append(path)
        used |= {frozenset(e) for e in zip(path, path[1:])}
    return paths


def random_network(
    rng: np.random.Generator,
    n_lines: tuple[int, int] = (3, 4),
    stations_per_line: tuple[int, int] = (4, 6),
    grid_size: int | None = None,
    city: str = "synthetic",
    country: str = "synthetic",
    max_tries: int = 100,
) -> TransitNetwork:
    """A connected random network; ranges are inclusive. Lines are "Line 1".."Line N"."""
    n = int(rng.integers(n_lines[0], n_lines[1] + 1))
    lengths = rng.integers(stations_per_line[0], stations_per_line[1] + 1, size=n)
    size = grid_size or max(6, int(stations_per_line[1]) + 2)
    for _ in range(max_tries):
        paths = _layout(rng, lengths, size)
        if paths is not None:
            break
    else:
        raise RuntimeError(f"could not lay out {n} lines of {list(lengths)} stations on a {size}x{size} grid")
    points = list(dict.fromkeys(p for path in paths for p in path))
    if len(points) > len(STATION_NAMES):
        raise ValueError(f"{len(points)} stations but only {len(STATION_NAMES)} distinct names")
    picks = rng.choice(len(STATION_NAMES), size=len(points), replace=False)
    names = {p: STATION_NAMES[int(i)] for p, i in zip(points, picks)}
    lines = {f"Line {i + 1}": [names[p] for p in path] for i, path in enumerate(paths)}
    positions = {names[p]: (float(p[0]), float(p[1])) for p in points}
    net = TransitNetwork(city=city, country=country, lines=lines, positions=positions)
    net.difficulty = city_difficulty(len(lines), len(net.transfer_stations()), SYNTHETIC_THRESHOLDS)
    return net
