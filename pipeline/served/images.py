"""The one image loader: file path or bytes -> RGB uint8 array, for training and serving alike.

Any format Pillow reads; EXIF orientation applied; grayscale, alpha, palette, CMYK and 16-bit turned
into plain RGB; animations give their first frame. What cannot be used raises ImageError with the
reason, so ingest can report and skip it and serving can answer 4xx.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """Input that is not a usable image; str() names the problem."""


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Decode image bytes into an upright RGB image.

    draft_size lets JPEG decode straight at a reduced scale (no smaller than draft_size per side):
    a 12-megapixel photo bound for a 224-pixel input decodes several times faster.
    """
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on its own bomb limit; we apply ours below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image (no format Pillow reads recognises it)") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"too many pixels: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:  # a header cut short or garbled
        raise ImageError(f"truncated or corrupt image data ({err})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{width}x{height} is {width * height} pixels, over the limit of {max_pixels}")
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    try:
        image.seek(0)  # first frame of an animation
        image.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"truncated or corrupt image data ({err})") from None
    image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparent pixels become white, as a viewer shows them."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Pillow's own conversion clips 16-bit values at 255 (a white image); scale instead.
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(values / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")  # applies a transparent palette entry, if any
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(source: bytes | str | Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS, source_size: int | None = None) -> np.ndarray:
    """Bytes or a file path -> (size, size, 3) uint8, the input every model of ours takes.

    source_size: the resolution the model learned from (None: match nothing). A sharper image is
    first brought down to it, so that serving shows the model what training showed it: a model
    trained on 32x32 images upscaled to 224 has never seen the detail of a sharp 224-pixel photo.
    """
    return load_views(source, size, [source_size], max_pixels)[0]


def load_views(source: bytes | str | Path, size: int, view_sizes: list[int | None], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes or a file path -> (views, size, size, 3) uint8: the image decoded once, then brought to
    the input size once per view (load_image's source_size: None goes straight to the input size)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    image = decode(data, max_pixels=max_pixels, draft_size=max(min(size, s or size) for s in view_sizes))  # the sharpest view's
    return np.stack([resized(image, size, source_size) for source_size in view_sizes])


def resized(image: Image.Image, size: int, source_size: int | None) -> np.ndarray:
    # Squash, not crop: a side view of an airliner is much wider than tall, and cropping cuts it off.
    if source_size and min(image.size) > source_size:
        image = image.resize((source_size, source_size), Image.Resampling.BILINEAR)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_batch(paths, size: int, max_pixels: int = DEFAULT_MAX_PIXELS, progress: str | None = None, source_size: int | None = None) -> np.ndarray:
    """Load known-good image files (from the manifest) into one (n, size, size, 3) uint8 array."""
    from tqdm import tqdm

    paths = list(paths)
    batch = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc=progress, disable=progress is None, unit="img")):
        batch[i] = load_image(path, size, max_pixels, source_size)
    return batch


def load_folder(root: str | Path, labels: list[str], size: int, view_sizes: list[int | None], max_pixels: int = DEFAULT_MAX_PIXELS):
    """A folder of class folders -> (images (n, views, size, size, 3), labels, paths); files that are
    not usable images are reported and skipped."""
    images, found, paths = [], [], []
    for label in labels:
        for path in sorted(p for p in (Path(root) / label).rglob("*") if p.is_file()):
            try:
                images.append(load_views(path, size, view_sizes, max_pixels))
            except ImageError as err:
                print(f"skipped {path}: {err}")
                continue
            found.append(label)
            paths.append(str(path))
    empty = np.empty((0, len(view_sizes), size, size, 3), np.uint8)
    return np.stack(images) if images else empty, np.array(found), paths
