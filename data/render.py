"""Draw a TransitNetwork as a PNG: coloured line polylines, station dots (white rings for transfer
stations), station labels and a legend of line names under the map.

Uses Pillow's bundled font (never a system font), so the same network and size give the same bytes.
Networks without positions get a schematic layout (`data.layout`). Labels are skipped for names the font
cannot draw (the bundled font has no CJK glyphs) and, on big networks, for non-transfer stations.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from data.layout import schematic_positions
from data.network import TransitNetwork

PALETTE = (
    (228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (166, 86, 40),
    (231, 41, 138), (0, 150, 150), (140, 140, 0), (0, 0, 128), (110, 110, 110), (200, 160, 0),
)

# Lines named after a colour (Washington's "Red Line", Lisbon's "Azul") are drawn in that colour.
NAMED_COLOURS = {
    "red": (228, 26, 28), "vermelha": (228, 26, 28), "blue": (55, 126, 184), "azul": (55, 126, 184),
    "green": (77, 175, 74), "verde": (77, 175, 74), "yellow": (230, 190, 0), "amarela": (230, 190, 0),
    "orange": (255, 127, 0), "purple": (152, 78, 163), "brown": (166, 86, 40), "pink": (231, 41, 138),
    "silver": (150, 150, 150), "grey": (110, 110, 110), "gray": (110, 110, 110), "gold": (200, 160, 0),
}


def line_colours(names: list[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per line: its named colour if it has one, else the palette in table order."""
    out = {}
    for i, name in enumerate(names):
        words = [w for w in name.lower().replace("-", " ").split() if w in NAMED_COLOURS]
        out[name] = NAMED_COLOURS[words[0]] if words else PALETTE[i % len(PALETTE)]
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _drawable(font, text: str) -> bool:
    """False if any character would come out as the font's missing-glyph box."""
    missing = bytes(font.getmask("\uffff"))
    return all(ch.isspace() or bytes(font.getmask(ch)) != missing for ch in text)


def _legend(draw, font, names, width, pad):
    """Entries (x, y, name) wrapped into rows; returns entries and the legend height."""
    entries, x, y = [], pad, 0
    row_h = font.getbbox("Ag")[3] + pad // 2
    for name in names:
        w = 3 * pad + draw.textlength(name, font=font) + pad
        if x + w > width - pad and x > pad:
            x, y = pad, y + row_h
        entries.append((x, y, name))
        x += w
    return entries, y + row_h + pad


def _project(positions, box):
    """Map positions into box = (left, top, right, bottom), keeping the aspect ratio."""
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
    left, top, right, bottom = box
    scale = min(right - left, bottom - top) / span
    ox = left + ((right - left) - (max(xs) - min(xs)) * scale) / 2
    oy = top + ((bottom - top) - (max(ys) - min(ys)) * scale) / 2
    return {s: (ox + (x - min(xs)) * scale, oy + (y - min(ys)) * scale) for s, (x, y) in positions.items()}


_CORNERS = ((1, -1), (1, 1), (-1, -1), (-1, 1), (1, 0), (-1, 0), (0, -1), (0, 1))


def _label_box(text_w, text_h, xy, r, corner):
    """Label box beside the dot at xy; corner (dx, dy) in {-1, 0, 1} picks the side."""
    cx = {1: xy[0] + r + 2, -1: xy[0] - r - 2 - text_w, 0: xy[0] - text_w / 2}[corner[0]]
    cy = {-1: xy[1] - r - text_h, 1: xy[1] + r, 0: xy[1] - text_h / 2}[corner[1]]
    return (cx, cy, cx + text_w, cy + text_h)


def _track_points(xy, net, step=4.0) -> np.ndarray:
    """(k, 2) points every `step` px along every line, as obstacles for labels."""
    pts = [np.zeros((0, 2))]
    for stops in net.lines.values():
        for a, b in zip(stops, stops[1:]):
            p0, p1 = np.array(xy[a]), np.array(xy[b])
            n = max(int(np.abs(p1 - p0).max() / step), 1)
            pts.append(p0 + (p1 - p0) * (np.arange(n + 1)[:, None] / n))
    return np.concatenate(pts)


def _overlap(a, b) -> bool:
    return not (a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3])


def _place_label(box_of, obstacles, taken, size):
    """The candidate box (in _CORNERS order) inside the image with the fewest collisions."""
    def cost(b):
        x, y = obstacles[:, 0], obstacles[:, 1]
        hits = int(np.count_nonzero((x >= b[0]) & (x <= b[2]) & (y >= b[1]) & (y <= b[3])))
        overlaps = sum(_overlap(b, t) for t in taken)
        outside = b[0] < 0 or b[1] < 0 or b[2] > size[0] or b[3] > size[1]
        return (outside, overlaps, hits)
    return min((box_of(c) for c in _CORNERS), key=cost)


def _label_size(net: TransitNetwork, size: int) -> int:
    """Font px so a typical label is about 1.6 station spacings wide (8 px minimum, size/34 maximum)."""
    stations = net.stations()
    spacing = size / max(len(stations), 1) ** 0.5
    avg_len = sum(len(s) for s in stations) / max(len(stations), 1)
    return int(max(8, min(size // 34, 1.6 * spacing / (0.55 * max(avg_len, 1)))))


def _draw_labels(draw, net, xy, transfers, font, r, max_labels, size):
    """Transfer stations first; a label that would overlap an earlier one is left out (unreadable)."""
    order = [s for s in xy if s in transfers] + [s for s in xy if s not in transfers]
    if len(order) > max_labels:
        order = [s for s in order if s in transfers]
    obstacles, taken = _track_points(xy, net), []
    text_h = font.getbbox("Ag")[3]
    for s in order:
        if not _drawable(font, s):
            continue
        text_w = draw.textlength(s, font=font)
        box = _place_label(lambda c: _label_box(text_w, text_h, xy[s], r, c), obstacles, taken, (size, size))
        if any(_overlap(box, t) for t in taken):
            continue
        taken.append(box)
        draw.text(box[:2], s, fill="black", font=font, stroke_width=2, stroke_fill="white")


def _draw_legend(draw, net, colours, font, entries, top, pad, line_width, size):
    draw.line((0, top, size, top), fill=(200, 200, 200), width=1)
    text_h = font.getbbox("Ag")[3]
    for x, y, name in entries:
        mid = top + pad // 2 + y + text_h // 2
        draw.line((x, mid, x + 2 * pad, mid), fill=colours[name], width=line_width)
        # A name the font cannot draw is shown by its position in the table (= in the map text).
        label = name if _drawable(font, name) else f"#{list(net.lines).index(name) + 1}"
        draw.text((x + 3 * pad, top + pad // 2 + y), label, fill="black", font=font)


def render_network(net: TransitNetwork, size: int = 448, max_labels: int = 120) -> bytes:
    """PNG bytes of a size x size drawing of the network."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    pad = max(4, size // 64)
    legend_font = _font(max(9, min(size // 32, 24)))
    entries, legend_h = _legend(draw, legend_font, list(net.lines), size, pad)
    margin = max(24, size // 10)
    positions = net.positions if net.positions and set(net.stations()) <= set(net.positions) else None
    positions = positions or schematic_positions(net)
    box = (margin, margin, size - margin, size - legend_h - margin // 2)
    xy = _project({s: positions[s] for s in net.stations()}, box)
    spacing = size / max(len(xy), 1) ** 0.5  # typical distance between stations
    width, r = max(2, min(size // 90, int(spacing / 10))), max(2, min(size // 100, int(spacing / 8)))
    colours = line_colours(list(net.lines))
    for name, stops in net.lines.items():
        if len(stops) > 1:
            draw.line([xy[s] for s in stops], fill=colours[name], width=width, joint="curve")
    transfers = set(net.transfer_stations())
    for s, (x, y) in xy.items():
        if s in transfers:
            draw.ellipse((x - r - 2, y - r - 2, x + r + 2, y + r + 2), fill="white", outline="black", width=2)
        else:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colours[net.lines_through(s)[0]])
    _draw_labels(draw, net, xy, transfers, _font(_label_size(net, size)), r + 2, max_labels, size)
    _draw_legend(draw, net, colours, legend_font, entries, size - legend_h, pad, width, size)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
