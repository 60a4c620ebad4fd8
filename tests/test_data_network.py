"""TransitNetwork queries and the random grid generator, checked against brute force written here."""
import itertools
import re

import numpy as np
import pytest

from data.network import TransitNetwork, city_difficulty
from data.synthetic import SYLLABLES, random_network
from rewards.stations import clean_station

SEEDS = range(120)


def _hand_made():
    # A - B - C - D on L1; X - C - Y - Z on L2; Z - W - A on L3 (a triangle: two ways from B to Z)
    return TransitNetwork("t", "c", {
        "L1": ["A", "B", "C", "D"], "L2": ["X", "C", "Y", "Z"], "L3": ["Z", "W", "A"],
    })


def test_basic_queries():
    net = _hand_made()
    assert net.lines_through("C") == ["L1", "L2"]
    assert net.lines_through("nowhere") == []
    assert net.transfer_stations() == ["A", "C", "Z"]
    assert net.transfer_stations("L2") == ["C", "Z"]
    assert net.on_same_line("B", "D") and not net.on_same_line("B", "Y")
    assert net.stops_between("L1", "A", "D") == 2
    assert net.stops_between("L1", "C", "B") == 0
    with pytest.raises(ValueError):
        net.stops_between("L1", "A", "Z")


def test_fewest_transfer_route_tie_breaks():
    net = _hand_made()
    assert net.fewest_transfer_route("B", "D") == [("L1", "B", "D")]
    # B->Z: via C on L2 (1 + 2 stops) or via A on L3 (1 + 2 stops): equal, so table order picks L1 then L2.
    assert net.fewest_transfer_route("B", "Z") == [("L1", "B", "C"), ("L2", "C", "Z")]
    # D->W: via A on L3 (3 + 1 stops) beats via C, Z (more transfers).
    assert net.fewest_transfer_route("D", "W") == [("L1", "D", "A"), ("L3", "A", "W")]
    assert net.fewest_transfer_route("B", "B") == []
    assert net.route_transfer_count("X", "W") == 1


def test_route_prefers_fewer_transfers_over_fewer_stops():
    net = TransitNetwork("t", "c", {
        "Long": ["S", "a", "b", "c", "d", "e", "T"], "P": ["S", "M"], "Q": ["M", "T"],
    })
    assert net.fewest_transfer_route("S", "T") == [("Long", "S", "T")]


def test_city_difficulty_thresholds():
    assert city_difficulty(3, 4) == "easy"
    assert city_difficulty(5, 11) == "middle"
    assert city_difficulty(4, 11) == "middle"
    assert city_difficulty(10, 0) == "hard"
    assert city_difficulty(2, 50) == "hard"


def _connected(lines):
    """Independent BFS over station adjacency."""
    adj = {}
    for stops in lines.values():
        for a, b in zip(stops, stops[1:]):
            adj.setdefault(a, set()).add(b)
            adj.setdefault(b, set()).add(a)
    start = next(iter(adj))
    seen, todo = {start}, [start]
    while todo:
        for n in adj[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen == set(adj)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_invariants(seed):
    net = random_network(np.random.default_rng(seed))
    lines = net.lines
    assert list(lines) == [f"Line {i + 1}" for i in range(len(lines))]
    assert 3 <= len(lines) <= 4
    assert all(4 <= len(stops) == len(set(stops)) <= 6 for stops in lines.values())
    assert _connected(lines)
    stations = {s for stops in lines.values() for s in stops}
    # every extra line shares at least one station with an earlier one
    for i, stops in enumerate(list(lines.values())[1:], start=1):
        earlier = {s for st in list(lines.values())[:i] for s in st}
        assert earlier & set(stops)
    syllable = "(" + "|".join(sorted(SYLLABLES, key=len, reverse=True)) + ")"
    for s in stations:
        assert re.fullmatch(syllable + syllable, s.lower()), s
        assert s[0].isupper() and s[1:].islower()
    assert len({clean_station(s) for s in stations}) == len(stations)  # distinct for the scorer too
    assert set(net.positions) == stations
    assert len({net.positions[s] for s in stations}) == len(stations)
    segments = []
    for stops in lines.values():
        for a, b in zip(stops, stops[1:]):
            (xa, ya), (xb, yb) = net.positions[a], net.positions[b]
            assert max(abs(xa - xb), abs(ya - yb)) == 1  # grid neighbours
            segments.append(frozenset((a, b)))
    assert len(segments) == len(set(segments))  # no shared track: every line stays visible
    assert net.difficulty in ("easy", "middle", "hard")


def test_random_network_deterministic_and_varied():
    a = random_network(np.random.default_rng(7))
    b = random_network(np.random.default_rng(7))
    c = random_network(np.random.default_rng(8))
    assert (a.lines, a.positions, a.difficulty) == (b.lines, b.positions, b.difficulty)
    assert a.lines != c.lines


def test_random_network_size_options():
    net = random_network(np.random.default_rng(0), n_lines=(5, 5), stations_per_line=(7, 8))
    assert len(net.lines) == 5 and all(7 <= len(s) <= 8 for s in net.lines.values())


def _brute_force_best(lines, a, b):
    """(transfers, stops) of the best route, by enumerating line sequences and transfer stations."""
    names = list(lines)
    for k in range(1, len(names) + 1):
        best = None
        for seq in itertools.product(names, repeat=k):
            if a not in lines[seq[0]] or b not in lines[seq[-1]]:
                continue
            if any(x == y for x, y in zip(seq, seq[1:])):
                continue
            hubs = [sorted(set(lines[x]) & set(lines[y])) for x, y in zip(seq, seq[1:])]
            for choice in itertools.product(*hubs):
                points = [a, *choice, b]
                stops = sum(abs(lines[ln].index(p) - lines[ln].index(q)) for ln, p, q in zip(seq, points, points[1:]))
                best = stops if best is None else min(best, stops)
        if best is not None:
            return k - 1, best
    return None


@pytest.mark.parametrize("seed", range(40))
def test_fewest_transfer_route_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng)
    stations = net.stations()
    for _ in range(6):
        a, b = (stations[int(i)] for i in rng.choice(len(stations), 2, replace=False))
        route = net.fewest_transfer_route(a, b)
        assert route[0][1] == a and route[-1][2] == b
        for (ln, dep, arr), nxt in zip(route, route[1:] + [None]):
            assert dep in net.lines[ln] and arr in net.lines[ln] and dep != arr
            if nxt is not None:
                assert nxt[1] == arr and nxt[0] != ln
        stops = sum(abs(net.lines[ln].index(d) - net.lines[ln].index(r)) for ln, d, r in route)
        assert (len(route) - 1, stops) == _brute_force_best(net.lines, a, b)
