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
    try:
        return reasonmap_root()
    except FileNotFoundError:
        pytest.skip("real ReasonMap data not available")


def test_root_resolution(monkeypatch, tmp_path, root):
    (tmp_path / "stations").mkdir()
    monkeypatch.setenv(real.ENV_VAR, str(tmp_path))
    assert reasonmap_root() == tmp_path
    monkeypatch.setenv(real.ENV_VAR, str(tmp_path / "absent"))
    assert reasonmap_root() == root  # falls through to the shared folder
    monkeypatch.setattr(real, "REPO", tmp_path / "repo")
    with pytest.raises(FileNotFoundError, match="absent.*WAYPOINT_REASONMAP_DIR"):
        reasonmap_root()


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
