"""Image loading: every bad file is one UsageError naming the problem; odd modes become RGB."""

import numpy as np
import pytest
from PIL import Image

from ficoco_edge.errors import UsageError
from ficoco_edge.runtime.images import MAX_ASPECT, MAX_PIXELS, open_image


def save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.png", "not found"),
    (lambda p: p, "not a file"),
    (lambda p: (p / "notes.png").write_text("hello") and p / "notes.png", "not an image"),
    (lambda p: (p / "empty.jpg").write_bytes(b"") or p / "empty.jpg", "not an image"),
])
def test_bad_paths(tmp_path, make, message):
    with pytest.raises(UsageError, match=message):
        open_image(make(tmp_path))


def test_truncated_file(tmp_path):
    full = save(tmp_path, "full.png", Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UsageError, match="truncated or corrupted"):
        open_image(cut)


def test_tiny_enormous_and_extreme_aspect(tmp_path):
    with pytest.raises(UsageError, match="at least") as tiny:
        open_image(save(tmp_path, "tiny.png", Image.new("RGB", (4, 100))))
    assert "corrupted" not in str(tiny.value)  # a size problem, not a decoding one
    with pytest.raises(UsageError, match="long side is at most"):  # resizing it would need gigabytes
        open_image(save(tmp_path, "strip.png", Image.new("1", (MAX_ASPECT * 8 + 1, 8))))
    side = int(MAX_PIXELS**0.5) + 10  # a 1-bit image compresses to a few kB
    with pytest.raises(UsageError, match="resize it below"):
        open_image(save(tmp_path, "huge.png", Image.new("1", (side, side))))


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    got = np.asarray(open_image(save(tmp_path, "a.png", rgba)))
    assert got.shape == (16, 16, 3)
    assert tuple(got[0, 0]) == (0, 0, 255) and tuple(got[5, 5]) == (255, 255, 255)


def test_16_bit_grey_and_cmyk(tmp_path):
    grey16 = Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16))
    assert np.asarray(open_image(save(tmp_path, "g.png", grey16))).min() == 255
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    got = np.asarray(open_image(save(tmp_path, "c.jpg", cmyk)))
    assert got.shape == (16, 16, 3) and got[..., 0].mean() > 200 and got[..., 1].mean() < 60


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    got = open_image(save(tmp_path, "r.jpg", image, exif=exif))
    assert got.size == (20, 40)
