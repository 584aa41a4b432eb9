"""Shared fixtures: small generated images in every format the loader must take."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# The file that takes longest (about 23 minutes, its tests one after another on one shared project):
# collected first, so that an xdist worker starts it at once and the other worker takes everything else.
LONGEST_FILE = "test_pipeline_e2e.py"


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name != LONGEST_FILE)  # stable: every other test keeps its order


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> Image.Image:
    """An RGB image whose corners differ, so orientation and colour mistakes show."""
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1), "RGB")


@pytest.fixture
def good_images() -> dict[str, bytes]:
    """One image of each kind the loader accepts, as file bytes."""
    rgb = gradient()
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    sixteen = Image.fromarray((np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16))
    frames = [gradient(), Image.new("RGB", (40, 30), "red")]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return {
        "png_rgba": encode(rgba, "PNG"),
        "png_grayscale": encode(rgb.convert("L"), "PNG"),
        "png_palette": encode(rgb.convert("P"), "PNG"),
        "png_16bit": encode(sixteen, "PNG"),
        "jpeg_cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "jpeg_exif_rotated": encode(rgb, "JPEG", exif=exif),
        "webp": encode(rgb, "WEBP"),
        "gif_animated": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "bmp": encode(rgb, "BMP"),
        "tiff": encode(rgb, "TIFF"),
        "tiny_1x1": encode(Image.new("RGB", (1, 1), "blue"), "PNG"),
        "very_wide": encode(gradient(4000, 3), "PNG"),
    }


@pytest.fixture
def bad_images() -> dict[str, bytes]:
    """Inputs that are not usable images, by the reason the loader must name."""
    jpeg = encode(gradient(), "JPEG")
    return {
        "empty": b"",
        "not an image": b"%PDF-1.4 this is not an image",
        "truncated": jpeg[: len(jpeg) // 2],
        "truncated header": jpeg[:100],
        "pixels": encode(Image.new("L", (3000, 3000)), "PNG"),  # 9 MP, over a 1 MP test limit
    }
