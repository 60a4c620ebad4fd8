"""Figure handling: every figure is stored as PNG or JPEG bytes, whatever form it arrived in
(bytes, a file path, a base64 string or data URI, an HF Image dict {"bytes", "path"}, a PIL image)."""
from __future__ import annotations

import base64
import binascii
import functools
import io
import os
from pathlib import Path

from PIL import Image

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# A full-resolution ReasonMap map (kl, 278 Mpx; the shipped copies are scaled down) is above Pillow's default
# bomb limit, and below anything hostile.
Image.MAX_IMAGE_PIXELS = 300_000_000


def encode_image(img: Image.Image, fmt: str = "png") -> bytes:
    """PNG (lossless) or JPEG (quality 90) bytes of an image."""
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG")
    elif fmt == "jpeg":
        img.convert("RGB").save(buf, format="JPEG", quality=90)
    else:
        raise ValueError(f"image format must be 'png' or 'jpeg', got {fmt!r}")
    return buf.getvalue()


def fit_max_side(img: Image.Image, max_side: int) -> Image.Image:
    """A copy no larger than max_side on its longer side (never enlarged)."""
    img = img.convert("RGB")
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    return img


@functools.lru_cache(maxsize=32)
def image_file_bytes(path: str, max_side: int = 1024, fmt: str = "png") -> bytes:
    """An image file resized to max_side and re-encoded (cached: every question of a city shares it)."""
    with Image.open(path) as img:
        return encode_image(fit_max_side(img, max_side), fmt)


def _is_encoded(data: bytes) -> bool:
    return data.startswith(_PNG_MAGIC) or data.startswith(_JPEG_MAGIC)


def _from_string(value: str, base_dir: Path | None) -> bytes:
    """A path (absolute or relative to base_dir) if one exists, else base64 (data URI prefix allowed)."""
    candidates = [Path(value)] if os.path.isabs(value) else [Path(base_dir or ".") / value, Path(value)]
    if len(value) < 4096:
        for path in candidates:
            if path.is_file():
                return path.read_bytes()
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"figure is neither an existing file nor base64: {value[:60]!r}") from None


def figure_bytes(value, base_dir: str | Path | None = None) -> bytes | None:
    """Normalise any figure form to PNG/JPEG bytes; None stays None. ValueError if it is not an image."""
    if value is None:
        return None
    base = Path(base_dir) if base_dir is not None else None
    if isinstance(value, Image.Image):
        return encode_image(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return figure_bytes(value["bytes"], base)
        if value.get("path"):
            return figure_bytes(str(value["path"]), base)
        raise ValueError("figure dict has neither 'bytes' nor 'path'")
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, (str, os.PathLike)):
        data = _from_string(os.fspath(value), base)
    else:
        raise ValueError(f"figure of type {type(value).__name__} is not supported")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if _is_encoded(data):
                img.verify()  # header and chunk checksums; cheap even for a 5000 px map
                return data
            img.load()
            return encode_image(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"figure does not decode as an image: {exc}") from None


def load_image(figure, base_dir: str | Path | None = None) -> Image.Image | None:
    """A decoded RGB PIL image from any figure form, or None when there is no figure."""
    data = figure_bytes(figure, base_dir)
    if data is None:
        return None
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")
