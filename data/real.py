"""The 25 real transit networks of ReasonMap (stations/<country>/<city>.json), the real map images
(maps/<country>/<city>.png: 12 present, although the data README says 13), and the question set the
project generates over them (source="real"); cities without a real image get a rendered schematic.

Station markers (" (Transfer Station)", "（换乘站）", ...) are stripped on load; a name shared by two lines is
one transfer station. City difficulty uses `data.network.REAL_THRESHOLDS`: easy = at most 4 lines and at
most 10 transfer stations, hard = 10+ lines or 50+ transfer stations, middle otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data.images import image_file_bytes
from data.network import REAL_THRESHOLDS, TransitNetwork, city_difficulty
from data.questions import build_questions
from data.render import render_network
from rewards.map_vqa import QUESTION_TYPES
from rewards.stations import load_line_table

ENV_VAR = "WAYPOINT_REASONMAP_DIR"
# Shipped with the project as package data (data/reasonmap/README.md): found in a clone and in an installed copy.
PACKAGED_ROOT = Path(__file__).resolve().parent / "reasonmap"


def reasonmap_root() -> Path:
    """The real-data directory: $WAYPOINT_REASONMAP_DIR when set and holding stations/, else the packaged copy."""
    tried = []
    if os.environ.get(ENV_VAR):
        tried.append(Path(os.environ[ENV_VAR]))
    tried.append(PACKAGED_ROOT)
    for path in tried:
        if (path / "stations").is_dir():
            return path
    listed = ", ".join(str(p) for p in tried)
    raise FileNotFoundError(f"no ReasonMap data (a folder with stations/) at: {listed}; set ${ENV_VAR}")


def load_real_network(path: Path) -> TransitNetwork:
    """One city from stations/<country>/<city>.json."""
    lines = load_line_table(str(path))
    net = TransitNetwork(city=path.stem, country=path.parent.name, lines=lines)
    net.difficulty = city_difficulty(len(lines), len(net.transfer_stations()), REAL_THRESHOLDS)
    return net


def load_real_networks(root: str | Path | None = None) -> list[TransitNetwork]:
    """All cities, sorted by (country, city)."""
    root = Path(root) if root is not None else reasonmap_root()
    return [load_real_network(p) for p in sorted((root / "stations").glob("*/*.json"))]


def real_map_image(root: str | Path | None, country: str, city: str) -> Path | None:
    """Path of the city's real map image, or None if there is none."""
    root = Path(root) if root is not None else reasonmap_root()
    path = root / "maps" / country / f"{city}.png"
    return path if path.is_file() else None


def city_figure(root: Path, net: TransitNetwork, max_side: int = 1024, fmt: str = "png") -> bytes:
    """The real map resized to max_side where one exists, else a rendered schematic max_side wide."""
    path = real_map_image(root, net.country, net.city)
    if path is not None:
        return image_file_bytes(str(path), max_side, fmt)
    return render_network(net, size=max_side)


def real_dataset(root: str | Path | None = None, types=QUESTION_TYPES, per_type: int = 4, seed: int = 0,
                 max_side: int = 1024, images: bool = True, image_format: str = "png") -> list[dict]:
    """Questions over every real city (rng per city from (seed, city index)), source="real"."""
    root = Path(root) if root is not None else reasonmap_root()
    rows = []
    for i, net in enumerate(load_real_networks(root)):
        figure = city_figure(root, net, max_side, image_format) if images else None
        rng = np.random.default_rng([seed, i])
        rows += build_questions(net, rng, types, per_type, figure=figure, source="real")
    return rows
