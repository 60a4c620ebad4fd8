"""A transit network (line -> ordered stations) and the graph queries questions need.

A station is identified by its name: the same name on two lines is one station, a transfer station.
Routes are computed over (station, line) states, so ground truth always comes from the table.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

# City difficulty thresholds, (max lines, max transfers) for "easy"; (min lines, min transfers) for "hard".
# Real cities span 1-22 lines and 0-171 transfer stations; synthetic ones 3-6 lines and 1-10 transfers,
# so each family has its own scale (the split of the 25 real cities is 11 easy / 8 middle / 6 hard).
REAL_THRESHOLDS = {"easy": (4, 10), "hard": (10, 50)}
SYNTHETIC_THRESHOLDS = {"easy": (3, 3), "hard": (5, 6)}


def city_difficulty(line_count: int, transfer_count: int, thresholds: dict = REAL_THRESHOLDS) -> str:
    """easy if both counts are at most the easy limits; hard if either reaches a hard limit; else middle."""
    hard_lines, hard_transfers = thresholds["hard"]
    if line_count >= hard_lines or transfer_count >= hard_transfers:
        return "hard"
    easy_lines, easy_transfers = thresholds["easy"]
    if line_count <= easy_lines and transfer_count <= easy_transfers:
        return "easy"
    return "middle"


@dataclass
class TransitNetwork:
    """Lines in table order; positions (station -> (x, y), any units) are optional and only used to draw."""

    city: str
    country: str
    lines: dict[str, list[str]]
    positions: dict[str, tuple[float, float]] | None = None
    difficulty: str = "easy"
    _through: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.lines = {name: list(stops) for name, stops in self.lines.items()}
        self._through = {}
        for name, stops in self.lines.items():
            for stop in dict.fromkeys(stops):
                self._through.setdefault(stop, []).append(name)

    def stations(self) -> list[str]:
        """Every station once, in table order of first appearance."""
        return list(self._through)

    def lines_through(self, station: str) -> list[str]:
        """Lines (table order) that stop at the station; [] for an unknown station."""
        return list(self._through.get(station, []))

    def transfer_stations(self, line: str | None = None) -> list[str]:
        """Stations served by two or more lines, optionally only those on `line`."""
        pool = self.stations() if line is None else list(dict.fromkeys(self.lines[line]))
        return [s for s in pool if len(self._through[s]) >= 2]

    def on_same_line(self, a: str, b: str) -> bool:
        """True if some single line stops at both stations."""
        return bool(set(self._through.get(a, [])) & set(self._through.get(b, [])))

    def stops_between(self, line: str, a: str, b: str) -> int:
        """Stops strictly between a and b on `line` (shortest if a name repeats on the line)."""
        stops = self.lines[line]
        ia = [i for i, s in enumerate(stops) if s == a]
        ib = [i for i, s in enumerate(stops) if s == b]
        if not ia or not ib:
            raise ValueError(f"{a!r} or {b!r} is not on {line!r}")
        return min(abs(i - j) for i in ia for j in ib) - 1

    def fewest_transfer_route(self, a: str, b: str) -> list[tuple[str, str, str]]:
        """Sections (line, departure, arrival) of the route with fewest transfers, then fewest stops,
        then earliest lines in table order; [] if a == b or no route exists."""
        if a == b or a not in self._through or b not in self._through:
            return []
        order = {name: i for i, name in enumerate(self.lines)}
        # Cost = (transfers, stops, line indices so far): lexicographic, and extending two paths that
        # meet in the same state by the same step keeps their order, so Dijkstra stays exact.
        heap = [(0, 0, (order[ln],), a, ln, ((ln, a),)) for ln in self._through[a]]
        heapq.heapify(heap)
        done = set()
        while heap:
            transfers, stops, seq, station, line, path = heapq.heappop(heap)
            if (station, line) in done:
                continue
            done.add((station, line))
            if station == b:
                return _sections(path, b)
            for nxt in self._neighbours(line, station):
                if (nxt, line) not in done:
                    heapq.heappush(heap, (transfers, stops + 1, seq, nxt, line, path))
            for other in self._through[station]:
                if other != line and (station, other) not in done:
                    step = (transfers + 1, stops, seq + (order[other],), station, other, path + ((other, station),))
                    heapq.heappush(heap, step)
        return []

    def _neighbours(self, line: str, station: str) -> list[str]:
        stops = self.lines[line]
        out = []
        for i, s in enumerate(stops):
            if s == station:
                out += [stops[j] for j in (i - 1, i + 1) if 0 <= j < len(stops)]
        return out

    def route_transfer_count(self, a: str, b: str) -> int:
        """Transfers on the fewest-transfer route; 0 if there is no route."""
        return max(len(self.fewest_transfer_route(a, b)) - 1, 0)

    def is_connected(self) -> bool:
        """True if every station can reach every other."""
        stations = self.stations()
        if not stations:
            return True
        seen, todo = {stations[0]}, [stations[0]]
        while todo:
            s = todo.pop()
            for line in self._through[s]:
                for nxt in self._neighbours(line, s):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
        return len(seen) == len(stations)


def _sections(path: tuple, end: str) -> list[tuple[str, str, str]]:
    """Turn boarding events ((line, station), ...) into (line, departure, arrival) sections."""
    out = []
    for k, (line, dep) in enumerate(path):
        arr = path[k + 1][1] if k + 1 < len(path) else end
        out.append((line, dep, arr))
    return out

