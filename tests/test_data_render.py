"""Map rendering and figure normalisation."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from data.images import figure_bytes, fit_max_side, image_file_bytes, load_image
from data.network import TransitNetwork
from data.synthetic import random_network
from data.render import line_colours, render_network


def _decode(png):
    return Image.open(io.BytesIO(png))


@pytest.mark.parametrize("size", [224, 448])
def test_render_size_and_determinism(size):
    net = random_network(np.random.default_rng(3))
    png = render_network(net, size=size)
    assert png.startswith(b"\x89PNG")
    img = _decode(png)
    assert img.size == (size, size) and img.mode == "RGB"
    assert png == render_network(random_network(np.random.default_rng(3)), size=size)
    # something is drawn in every line colour
    pixels = set(map(tuple, np.asarray(img.convert("RGB")).reshape(-1, 3).tolist()))
    assert all(c in pixels for c in line_colours(list(net.lines)).values())


def test_render_without_positions_uses_schematic():
    net = TransitNetwork("x", "y", {"Red Line": ["Alpha", "Beta", "Gamma"], "B": ["Beta", "Delta", "Epsilon"],
                                    "C": ["甲站", "Epsilon"]})
    png = render_network(net, size=300)
    assert _decode(png).size == (300, 300)
    assert png == render_network(net, size=300)
    assert line_colours(list(net.lines))["Red Line"] == (228, 26, 28)


def test_fit_max_side_and_file_bytes(tmp_path):
    big = Image.new("RGB", (3000, 1500), "white")
    assert fit_max_side(big, 1024).size == (1024, 512)
    assert fit_max_side(Image.new("RGB", (100, 50)), 1024).size == (100, 50)  # never enlarged
    path = tmp_path / "map.png"
    Image.new("RGBA", (1200, 2400), (255, 0, 0, 255)).save(path)
    assert _decode(image_file_bytes(str(path), 600)).size == (300, 600)
    jpeg = image_file_bytes(str(path), 600, "jpeg")
    assert jpeg.startswith(b"\xff\xd8\xff")


def test_figure_forms(tmp_path):
    img = Image.new("RGB", (40, 20), "blue")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    png = buf.getvalue()
    (tmp_path / "f.png").write_bytes(png)
    b64 = base64.b64encode(png).decode()
    assert figure_bytes(png) == png
    assert figure_bytes(b64) == png
    assert figure_bytes("data:image/png;base64," + b64) == png
    assert figure_bytes("f.png", base_dir=tmp_path) == png
    assert figure_bytes({"bytes": png, "path": None}) == png
    assert figure_bytes({"bytes": None, "path": str(tmp_path / "f.png")}) == png
    assert figure_bytes(None) is None
    bmp = io.BytesIO()
    img.save(bmp, format="BMP")
    assert figure_bytes(bmp.getvalue()).startswith(b"\x89PNG")  # other formats re-encoded as PNG
    assert load_image(b64).size == (40, 20)
    assert load_image(None) is None
    for bad in (b"not an image", "no/such/file.png", {"bytes": None, "path": None}, 3.5):
        with pytest.raises(ValueError):
            figure_bytes(bad, base_dir=tmp_path)
