"""The 25 real ReasonMap networks: where they are found, that they load clean, and their images."""
import io
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from data import real
from data.real import city_figure, load_real_networks, real_map_image, reasonmap_root
from rewards.stations import MARKERS


@pytest.fixture(scope="module")
def root():
    return reasonmap_root()


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(real.ENV_VAR, raising=False)
    assert reasonmap_root() == Path(real.__file__).parent / "reasonmap"   # shipped with the package
    (tmp_path / "stations").mkdir()
    monkeypatch.setenv(real.ENV_VAR, str(tmp_path))
    assert reasonmap_root() == tmp_path
    monkeypatch.setenv(real.ENV_VAR, str(tmp_path / "absent"))
    assert reasonmap_root() == real.PACKAGED_ROOT  # falls through to the packaged copy
    monkeypatch.setattr(real, "PACKAGED_ROOT", tmp_path / "repo")
    with pytest.raises(FileNotFoundError, match="absent.*repo.*WAYPOINT_REASONMAP_DIR"):
        reasonmap_root()


def test_shipped_maps_are_at_most_2048_px_and_licensed():
    shipped = real.PACKAGED_ROOT
    maps = sorted((shipped / "maps").glob("*/*.png"))
    assert len(maps) == 12
    for path in maps:
        with Image.open(path) as img:
            assert img.format == "PNG" and max(img.size) == 2048, (path, img.size)
    assert (shipped / "LICENSE-ReasonMap").is_file() and (shipped / "LICENSE-RewardMap").is_file()


def test_all_cities_load_clean(root):
    nets = load_real_networks(root)
    assert len(nets) == 25
    assert len({(n.country, n.city) for n in nets}) == 25
    assert {"new_york", "beijing", "lisboa", "auckland"} <= {n.city for n in nets}
    for net in nets:
        assert (root / "stations" / net.country / f"{net.city}.json").is_file()
        for stops in net.lines.values():
            for s in stops:
                assert s == s.strip() and not any(m.strip() in s for m in MARKERS), s
        assert net.is_connected()
    difficulty = Counter(n.difficulty for n in nets)
    assert difficulty == {"easy": 11, "middle": 8, "hard": 6}
    ny = next(n for n in nets if n.city == "new_york")
    assert len(ny.lines) == 22 and len(ny.transfer_stations()) > 150


def test_real_images(root):
    with_map = [n for n in load_real_networks(root) if real_map_image(root, n.country, n.city)]
    assert len(with_map) == len(list((root / "maps").glob("*/*.png"))) >= 12
    assert real_map_image(root, "china", "beijing") is None
    small = min(with_map, key=lambda n: Path(real_map_image(root, n.country, n.city)).stat().st_size)
    img = Image.open(io.BytesIO(city_figure(root, small, max_side=512)))
    assert max(img.size) == 512
    beijing = next(n for n in load_real_networks(root) if n.city == "beijing")
    assert Image.open(io.BytesIO(city_figure(root, beijing, max_side=256))).size == (256, 256)
