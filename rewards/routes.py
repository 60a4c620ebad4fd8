"""Route answers of planning questions: parse "Route Name / Departure Stop / Arrival Stop" sections and write
them as one canonical string (the answer that equivalence classes and consistency compare).

Split out of `map_vqa` so `consistency` can parse routes without importing the scorer.
"""
from __future__ import annotations

from typing import NamedTuple

from rewards.stations import clean_station

# Beijing: the tables fold 八通线 into Line 1 and 大兴线 into Line 4.
LINE_ALIASES = (("八通", "Line 1"), ("大兴", "Line 4"))
LABELS = ("Route Name:", "Departure Stop:", "Arrival Stop:")


class Section(NamedTuple):
    """One ride of a planned route, as written by the model (stripped)."""
    route: str
    departure: str
    arrival: str


def _label_value(section: str, label: str) -> str:
    """Text after the first `label`, up to a newline or the next label.

    The released regex needs "Label: value\\n"; we also accept a value ending
    the section or running into the next label on the same line.
    """
    rest = section[section.find(label) + len(label):]
    end = len(rest)
    for stop in ("\n", *LABELS):
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    return rest[:end].strip()


def parse_route_sections(response: str) -> list[Section]:
    """Split on '--'; keep sections holding all three labels.

    route/departure: see `_label_value`; arrival: everything after the last
    "Arrival Stop:" (so trailing prose there spoils it, as released).
    """
    if not isinstance(response, str):
        return []
    sections = []
    for part in response.split("--"):
        if all(label in part for label in LABELS):
            sections.append(Section(
                route=_label_value(part, "Route Name:"),
                departure=_label_value(part, "Departure Stop:"),
                arrival=part.split("Arrival Stop:")[-1].strip(),
            ))
    return sections


def canonical_line(route: str) -> str:
    """Apply the Beijing aliases (八通 -> Line 1, 大兴 -> Line 4)."""
    for fragment, line in LINE_ALIASES:
        if fragment in route:
            route = line
    return route


def stop_key(raw: str) -> str:
    """A model-written stop as compared with the table."""
    # Cleaned twice, as released (once when parsed, once when compared); a second pass also catches e.g.
    # "STATION".
    return clean_station(clean_station(raw))


def route_string(sections) -> str:
    """Canonical route "line:dep>arr|..." (for answer-equivalence classes)."""
    return "|".join(f"{canonical_line(s.route)}:{stop_key(s.departure)}>{stop_key(s.arrival)}"
                    for s in sections)
