"""Image loading with validation: one clear error per problem, never a decoder traceback."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ficoco_edge.errors import UsageError

MIN_SIDE = 8
MAX_PIXELS = 50_000_000  # ~ 7000 x 7000; larger is refused before decoding (decompression bombs)
MAX_ASPECT = 100  # CLIP resizes the short side to ~336: at 400000 x 8 the long side would need gigabytes


def open_image(path: str | Path) -> Image.Image:
    """Read an image file as 8-bit RGB, applying its EXIF orientation."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"image {path} not found")
    if not path.is_file():
        raise UsageError(f"{path} is not a file; pass an image file (PNG, JPEG, WebP, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(path, image.size)
                image.load()
                image = ImageOps.exif_transpose(image)
    except UsageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UsageError(f"{path} is too large to decode safely ({exc}); resize it below {MAX_PIXELS:,} pixels") from exc
    except UnidentifiedImageError as exc:
        raise UsageError(f"{path} is not an image Pillow can read; pass a PNG, JPEG, WebP, BMP or GIF file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{path} could not be decoded ({exc}); the file may be truncated or corrupted") from exc
    return _to_rgb(image)


def _check_size(path: Path, size: tuple[int, int]) -> None:
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise UsageError(f"{path} is {w}x{h}; images need at least {MIN_SIDE} pixels on each side")
    if w * h > MAX_PIXELS:
        raise UsageError(f"{path} is {w}x{h} ({w * h:,} pixels); resize it below {MAX_PIXELS:,} pixels")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise UsageError(f"{path} is {w}x{h}; crop it so that its long side is at most {MAX_ASPECT}x its short side")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparency is composited onto white, 16-bit greys are scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 257).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
