"""Every image mode and format a data team's folders hold decodes as an image viewer shows it
(:func:`lemon.data.images.to_rgb`): files written by PIL in their real formats, compared with the
8-bit RGB pixels computed here from the array each file was made of."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lemon.data.images import (
    MISSING,
    READABLE,
    TOO_LARGE,
    UNREADABLE,
    UNSUPPORTED,
    image_suffixes,
    inspect_files,
    open_rgb,
)

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (6, 5), dtype=np.uint8)  # 8-bit values every high-depth file encodes
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (6, 5), dtype=np.uint8)


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What a viewer shows of a transparent image on a white page (PIL's integer alpha compositing)."""
    a = alpha.astype(np.int64)[..., None]
    return ((rgb.astype(np.int64) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _grey3(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2)


CASES = {
    # name: (how the file is written, the RGB a viewer shows)
    "png_16_bit_grey": (lambda p: Image.fromarray(GREY.astype(np.uint16) * 257).save(p / "a.png"), _grey3(GREY)),
    "tiff_16_bit_grey": (lambda p: Image.fromarray(GREY.astype(np.uint16) * 257).save(p / "a.tif"), _grey3(GREY)),
    "tiff_32_bit_int_holding_16_bits": (
        lambda p: Image.fromarray(GREY.astype(np.int32) * 257, "I").save(p / "a.tif"), _grey3(GREY)),
    "tiff_float_0_to_1": (lambda p: Image.fromarray(GREY.astype(np.float32) / 255, "F").save(p / "a.tif"), _grey3(GREY)),
    "png_grey_alpha": (
        lambda p: Image.fromarray(np.dstack([GREY, ALPHA]), "LA").save(p / "a.png"),
        _on_white(_grey3(GREY), ALPHA)),
    "png_rgba": (lambda p: Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA").save(p / "a.png"), _on_white(RGB, ALPHA)),
    "png_palette_transparent": (None, None),  # built below: needs the palette
    "png_1_bit": (lambda p: Image.fromarray(GREY > 127).save(p / "a.png"), _grey3(np.where(GREY > 127, 255, 0).astype(np.uint8))),
    "tiff_cmyk": (lambda p: Image.fromarray(RGB).convert("CMYK").save(p / "a.tif"), np.asarray(Image.fromarray(RGB).convert("CMYK").convert("RGB"))),
    "gif_animated_first_frame": (
        lambda p: Image.fromarray(GREY, "L").save(p / "a.gif", save_all=True, append_images=[Image.fromarray(255 - GREY, "L")]),
        _grey3(GREY)),
    "webp_lossless_animated_first_frame": (
        lambda p: Image.fromarray(RGB).save(p / "a.webp", lossless=True, save_all=True, append_images=[Image.fromarray(255 - RGB)]),
        RGB),
    "jfif_named_jpeg": (lambda p: Image.fromarray(RGB).save(p / "a.jfif", "JPEG", quality=100), None),
}  # fmt: skip


def _palette(p):
    """A palette PNG whose colour 0 is transparent (PIL mode P with 'transparency')."""
    img = Image.fromarray((GREY // 64).astype(np.uint8), "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    img.save(p / "a.png", transparency=0)


def _palette_expected():
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    index = GREY // 64
    return _on_white(colours[index], np.where(index == 0, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("name", list(CASES))
def test_each_mode_decodes_as_a_viewer_shows_it(tmp_path, name):
    write, expected = CASES[name]
    if name == "png_palette_transparent":
        write, expected = _palette, _palette_expected()
    write(tmp_path)
    (path,) = list(tmp_path.iterdir())
    rgb = open_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (5, 6)
    if expected is None:  # lossy JPEG: the same pixels PIL decodes, under the .jfif name
        expected = np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(rgb), expected)
    assert path.suffix in image_suffixes()  # a folder of such files is read, not skipped


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with EXIF orientation 6 ('rotate 90 degrees clockwise to view')."""
    img = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "a.jpg", quality=100, exif=exif)
    stored = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB"))
    shown = np.asarray(open_rgb(tmp_path / "a.jpg"))
    np.testing.assert_array_equal(shown, np.rot90(stored, k=-1))


def test_the_load_check_names_why_a_file_is_not_read(tmp_path):
    """Missing, damaged, over the pixel limit and a format without its plugin: four reasons, each as
    dropped.csv lists it; the check reads headers only (a 225-megapixel PNG is not decoded)."""
    Image.fromarray(RGB).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    Image.new("1", (15000, 15000), 1).save(tmp_path / "huge.png")
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    names = ["ok.png", "missing.png", "broken.png", "huge.png", "photo.heic"]
    codes, ids = inspect_files([tmp_path / n for n in names])
    heic = UNSUPPORTED if ".heic" not in image_suffixes() else READABLE
    assert codes.tolist() == [READABLE, MISSING, UNREADABLE, TOO_LARGE, heic]
    assert ids[0] != 0 and ids[1] == ids[2] == ids[3] == 0
    codes, _ = inspect_files([tmp_path / "huge.png"], max_pixels=15000 * 15000)
    assert codes.tolist() == [READABLE]
