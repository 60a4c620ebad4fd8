"""Question builders over a TransitNetwork. ReasonMap-Plus's own templates are not available, so the
types are defined here (ground truth always computed from the line table, never typed in):

- torf1: "Is station X on line L?" -- half of the questions true, half false.
- torf2: "Can you travel from X to Y on a single line without transferring?" -- balanced the same way.
- counting1: "How many stops are there between X and Y on line L (not counting X and Y)?" with four
  distinct options A-D that include the truth; answer = option index. The reference response lists the
  intermediate stops as `Stops: [..]` and gives the letter in \\boxed{}.
- counting2: "How many metro lines are shown on this map?" (at most one per network).
- counting3: "How many transfer stations are on line L?" (at most one per line).
- planning: "Plan a route from X to Y." Truth = the fewest-transfer route (then fewest stops, then table
  order). Station pairs are drawn, then picked round-robin over their transfer counts so routes with
  transfers are not swamped by easy single-line pairs.
"""
from __future__ import annotations

import numpy as np

from data.network import TransitNetwork
from data.render import render_network
from data.schema import (
    OPTION_LETTERS, boxed, line_ref, line_table_json, map_text, planning_text, route_json,
)
from data.synthetic import random_network
from rewards.map_vqa import QUESTION_TYPES


def _sample_unique(rng, draw, n: int, tries_per_item: int = 50) -> list:
    """Up to n distinct non-None results of draw(rng), with a bounded number of draws."""
    out, seen = [], set()
    for _ in range(max(n, 1) * tries_per_item):
        if len(out) >= n:
            break
        item = draw(rng)
        if item is not None and item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


def _split_balanced(rng, n: int) -> tuple[int, int]:
    """(true count, false count) for n questions; an odd one out goes to a random side."""
    extra = int(rng.integers(0, 2)) if n % 2 else 0
    return n // 2 + extra, n // 2 + (n % 2) - extra


def _pair_on_line(net, rng, unique_only=False):
    """Two distinct stations on one random line (as (line, a, b)), or None."""
    line = _pick(rng, list(net.lines))
    stops = net.lines[line]
    if unique_only:
        stops = [s for s in stops if stops.count(s) == 1]
    stops = list(dict.fromkeys(stops))
    if len(stops) < 2:
        return None
    i, j = rng.choice(len(stops), size=2, replace=False)
    return line, stops[int(i)], stops[int(j)]


def _balanced(rng, n, draw_true, draw_false, make):
    """Questions built from n/2 true and n/2 false draws, in random order; [] if either side is impossible."""
    n_true, n_false = _split_balanced(rng, n)
    trues = _sample_unique(rng, draw_true, n_true)
    falses = _sample_unique(rng, draw_false, n_false)
    if (n_true and not trues) or (n_false and not falses):
        return []
    rows = [make(item, 1) for item in trues] + [make(item, 0) for item in falses]
    return [rows[int(i)] for i in rng.permutation(len(rows))]


def build_torf1(net: TransitNetwork, rng, n: int) -> list[dict]:
    stations = net.stations()

    def draw_true(r):
        line = _pick(r, list(net.lines))
        return line, _pick(r, net.lines[line])

    def draw_false(r):
        line, station = _pick(r, list(net.lines)), _pick(r, stations)
        return None if station in net.lines[line] else (line, station)

    def make(item, truth):
        line, station = item
        return {"question": f"Is {station} on {line_ref(line)}?", "answer": truth, "station_1": station,
                "reference_response": boxed("yes" if truth else "no")}

    return _balanced(rng, n, draw_true, draw_false, make)


def build_torf2(net: TransitNetwork, rng, n: int) -> list[dict]:
    stations = net.stations()

    def draw_true(r):
        pair = _pair_on_line(net, r)
        return None if pair is None else pair[1:]

    def draw_false(r):
        if len(stations) < 2:
            return None
        i, j = r.choice(len(stations), size=2, replace=False)
        a, b = stations[int(i)], stations[int(j)]
        return None if net.on_same_line(a, b) else (a, b)

    def make(item, truth):
        a, b = item
        return {"question": f"Can you travel from {a} to {b} on a single line without transferring?",
                "answer": truth, "station_1": a, "station_2": b,
                "question_transfer_count": net.route_transfer_count(a, b),
                "reference_response": boxed("yes" if truth else "no")}

    return _balanced(rng, n, draw_true, draw_false, make)


def _count_options(rng, truth: int) -> list[int]:
    """Four distinct non-negative counts including the truth, in random order."""
    near = [truth + d for d in (-3, -2, -1, 1, 2, 3, 4, 5) if truth + d >= 0]
    picks = rng.choice(len(near), size=3, replace=False)
    options = [near[int(i)] for i in picks] + [truth]
    return [options[int(i)] for i in rng.permutation(4)]


def build_counting1(net: TransitNetwork, rng, n: int) -> list[dict]:
    def draw(r):
        pair = _pair_on_line(net, r, unique_only=True)
        if pair is None:
            return None
        line, a, b = pair
        # Keep pairs whose first common line (table order) is this one: that is the line the
        # counting1 detail reward reads the intermediate stops from.
        if [ln for ln in net.lines_through(a) if ln in net.lines_through(b)][0] != line:
            return None
        return (line,) + tuple(sorted((a, b)))  # unordered, so a pair is asked once

    rows = []
    for line, a, b in _sample_unique(rng, draw, n):
        if rng.integers(0, 2):  # the sort above fixed the order; restore a random direction
            a, b = b, a
        stops = net.lines[line]
        i, j = stops.index(a), stops.index(b)
        between = stops[i + 1:j] if i < j else stops[j + 1:i][::-1]
        options = _count_options(rng, len(between))
        index = options.index(len(between))
        choices = "\n".join(f"{OPTION_LETTERS[k]}. {v}" for k, v in enumerate(options))
        rows.append({
            "question": f"How many stops are there between {a} and {b} on {line_ref(line)} "
                        f"(not counting {a} and {b})?\n{choices}",
            "answer": index, "station_1": a, "station_2": b, "options": [str(v) for v in options],
            "question_transfer_count": 0,
            "reference_response": f"Stops: [{', '.join(between)}]\n{boxed(OPTION_LETTERS[index])}",
        })
    return rows


def build_counting2(net: TransitNetwork, rng, n: int) -> list[dict]:
    if n < 1:
        return []
    count = len(net.lines)
    return [{"question": "How many metro lines are shown on this map?", "answer": count,
             "reference_response": boxed(count)}]


def build_counting3(net: TransitNetwork, rng, n: int) -> list[dict]:
    lines = list(net.lines)
    rows = []
    for i in rng.permutation(len(lines))[:n]:
        line = lines[int(i)]
        count = len(net.transfer_stations(line))
        rows.append({"question": f"How many transfer stations are on {line_ref(line)}?", "answer": count,
                     "reference_response": boxed(count)})
    return rows


def build_planning(net: TransitNetwork, rng, n: int, pool_factor: int = 8) -> list[dict]:
    stations = net.stations()

    def draw(r):
        if len(stations) < 2:
            return None
        i, j = r.choice(len(stations), size=2, replace=False)
        return stations[int(i)], stations[int(j)]

    by_transfers: dict[int, list] = {}
    for a, b in _sample_unique(rng, draw, n * pool_factor):
        route = net.fewest_transfer_route(a, b)
        if route:
            by_transfers.setdefault(len(route) - 1, []).append((a, b, route))
    buckets = [by_transfers[t] for t in sorted(by_transfers)]
    buckets = [buckets[int(i)] for i in rng.permutation(len(buckets))]
    picked = []
    while len(picked) < n and any(buckets):
        for bucket in buckets:
            if bucket and len(picked) < n:
                picked.append(bucket.pop(0))
    return [{"question": f"Plan a route from {a} to {b}.", "answer": -1, "station_1": a, "station_2": b,
             "question_transfer_count": len(route) - 1, "routes": route_json([route]),
             "reference_response": planning_text(route)} for a, b, route in picked]


BUILDERS = {
    "torf1": build_torf1, "torf2": build_torf2, "counting1": build_counting1,
    "counting2": build_counting2, "counting3": build_counting3, "planning": build_planning,
}


def network_fields(net: TransitNetwork, figure: bytes | None, source: str) -> dict:
    """Fields every question over `net` shares."""
    return {
        "difficulty_city": net.difficulty, "city_line_count": len(net.lines),
        "city_transfer_count": len(net.transfer_stations()), "country": net.country, "city": net.city,
        "json": line_table_json(net.lines), "figure": figure, "map_text": map_text(net.lines), "source": source,
    }


def build_questions(network: TransitNetwork, rng: np.random.Generator, types=QUESTION_TYPES, per_type: int = 2,
                    figure: bytes | None = None, source: str = "synthetic") -> list[dict]:
    """Up to per_type rows of each type (fewer where the network has fewer distinct questions)."""
    shared = network_fields(network, figure, source)
    rows = []
    for qtype in types:
        if qtype not in BUILDERS:
            raise ValueError(f"unknown question type {qtype!r}; known: {', '.join(QUESTION_TYPES)}")
        for k, part in enumerate(BUILDERS[qtype](network, rng, per_type)):
            row = {"station_1": "", "station_2": "", "question_transfer_count": 0, "options": [], "routes": "[]"}
            row.update(shared)
            row.update(part)
            row["type"] = qtype
            row["id"] = f"{source}/{network.country}/{network.city}/{qtype}/{k}"
            rows.append(row)
    return rows


def synthetic_dataset(n_networks: int, types=QUESTION_TYPES, per_type: int = 2, seed: int = 0,
                      render_images: bool = True, image_size: int = 448, **network_kwargs) -> list[dict]:
    """Rows over n random networks; network i is city f"s{seed}-n{i:05d}" and has its own child rng."""
    rows = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_networks)):
        rng = np.random.default_rng(child)
        net = random_network(rng, city=f"s{seed}-n{i:05d}", country="synthetic", **network_kwargs)
        figure = render_network(net, size=image_size) if render_images else None
        rows += build_questions(net, rng, types, per_type, figure=figure, source="synthetic")
    return rows
