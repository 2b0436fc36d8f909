"""Image files as a viewer shows them: every PIL mode to 8-bit RGB, EXIF orientation applied, and the
cheap check at load that tells a readable image from a missing, damaged, oversized or unsupported one.

``PIL.Image.convert("RGB")`` alone is wrong for several real formats: a 16-bit greyscale PNG (mode
``I;16``) or a 32-bit one (``I``) is clipped to 255 (an all-white image), a float image (``F``) likewise,
and transparent pixels (``RGBA``, ``LA``, ``P`` with a transparent colour) take whatever colour their
hidden RGB holds (often black). :func:`to_rgb` scales high bit depths to 0..255, composites transparency
onto white, and turns a photo the way its EXIF orientation says. Animated GIF/WebP and multi-page TIFF
give their first frame.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

#: the largest image (width x height) decoded by default: PIL's own hard limit (2 x MAX_IMAGE_PIXELS);
#: larger ones are dropped and listed ('image too large'), --max_image_pixels raises it
DEFAULT_MAX_PIXELS = 178_956_970
#: image formats PIL cannot read without a plugin (listed as 'unsupported image format', with the fix)
PLUGIN_FORMATS = {
    ".heic": "pillow-heif",
    ".heif": "pillow-heif",
    ".hif": "pillow-heif",
    ".avif": "pillow-avif-plugin",
    ".jxl": "pillow-jxl-plugin",
}
#: why a file is not scored: the reasons :func:`inspect_files` gives (0 = readable; URL: a table cell
#: naming a remote image, never read)
READABLE, MISSING, UNREADABLE, TOO_LARGE, UNSUPPORTED, URL = range(6)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def content_id(data: bytes | memoryview) -> int:
    """The identity of an image: a 64-bit blake2b digest of its encoded bytes (its pixels for in-memory
    arrays). Two copies of one file share it wherever they live, so splits and fold assignments keyed by it
    agree between a table and a folder that hold the same images."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def decode_errors() -> tuple[type[BaseException], ...]:
    """What decoding a damaged image file raises (PIL: OSError for truncated/unidentified data, others)."""
    import struct
    import zlib

    from PIL import Image

    return (
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        struct.error,
        zlib.error,
        Image.DecompressionBombError,
    )


def register_plugins() -> None:
    """Let PIL open HEIC/AVIF when their plugins are installed (no error when they are not)."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_avif  # noqa: F401  (registers itself on import)
    except ImportError:
        pass


def image_suffixes() -> frozenset[str]:
    """File suffixes PIL can open here (``.jpg``, ``.jfif``, ``.png``, ``.tif``, ...), lower case."""
    from PIL import Image

    register_plugins()
    Image.init()
    return frozenset(
        ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
    )


def allow_large_images() -> None:
    """Switch off PIL's own decompression-bomb check (its warning above 89 megapixels and its error above
    179): lemon checks the size against --max_image_pixels itself, so an oversized image is dropped and
    listed, never a traceback or a stray warning."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None


def _scaled(img: Any) -> Any:
    """An 8-bit 'L' image from a 16/32-bit integer or float greyscale one."""
    from PIL import Image

    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        top = 65535.0
    elif img.mode == "F" and np.nanmax(a, initial=0.0) <= 1.0 and np.nanmin(a, initial=0.0) >= 0:
        top = 1.0  # a float image in [0, 1]
    else:  # 'I' (a 16-bit PNG opens so on older Pillow) or 'F': 8, 16 or 32 bits by its values
        peak = float(np.nanmax(a, initial=0.0))
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    a = np.nan_to_num(a.astype(np.float64), nan=0.0)
    return Image.fromarray(np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Any) -> Any:
    """``img`` (any PIL mode) as an 8-bit RGB image, as an image viewer shows it: EXIF orientation
    applied, 16-bit and float images scaled (not clipped) to 0..255, transparency composited onto white."""
    from PIL import Image, ImageOps

    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    try:
        orientation = img.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError):
        orientation = 1  # a damaged EXIF block: the pixels as stored
    img.load()  # decode now: a damaged image raises here, as the caller expects
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_DEPTH:
        return _scaled(img).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode == "P":
        img = img.convert("RGB")
    if img.mode in _ALPHA:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(path: str | os.PathLike | bytes) -> Any:
    """The image of a file path (or of encoded bytes) as :func:`to_rgb` gives it."""
    from PIL import Image

    allow_large_images()  # the size was checked at load (inspect_files)
    source = io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path
    with Image.open(source) as img:
        return to_rgb(img)


def inspect_bytes(data: bytes, suffix: str = "", max_pixels: int | None = None) -> int:
    """Why the encoded image ``data`` cannot be scored (one of the reason codes), READABLE when it can:
    a header parse and ``verify`` (no full decode), and its size against ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

    allow_large_images()
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size[0] * img.size[1] > limit:
                return TOO_LARGE
            img.verify()
        return READABLE
    except UnidentifiedImageError:
        return UNSUPPORTED if suffix.lower() in PLUGIN_FORMATS else UNREADABLE
    except (OSError, ValueError, SyntaxError, TypeError, EOFError, Image.DecompressionBombError):
        return UNREADABLE


def inspect_file(path: str, max_pixels: int | None = None) -> tuple[int, int]:
    """(reason code, content id) of one file, from one read of its bytes (content id 0 unless readable)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return MISSING, 0
    except OSError:  # a folder, a permission, an I/O error
        return (MISSING if not os.path.lexists(path) else UNREADABLE), 0
    code = inspect_bytes(data, os.path.splitext(path)[1], max_pixels)
    return code, (content_id(data) if code == READABLE else 0)


def inspect_files(
    paths: Sequence[str | os.PathLike], max_pixels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) reason codes (READABLE, MISSING, UNREADABLE, TOO_LARGE, UNSUPPORTED) and (n,) uint64 content
    ids (0 when not readable); each file read once, in threads (I/O bound)."""
    from concurrent.futures import ThreadPoolExecutor

    if not len(paths):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    register_plugins()
    workers = min(16, (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(
            pool.map(lambda p: inspect_file(p, max_pixels), [str(p) for p in paths], chunksize=256)
        )
    codes = np.fromiter((c for c, _ in found), dtype=np.int64, count=len(found))
    ids = np.fromiter((i for _, i in found), dtype=np.uint64, count=len(found))
    return codes, ids


def is_url(value: Any) -> bool:
    """Whether a table cell names an image by URL (``http://``, ``s3://``, ``file://``, ...)."""
    return isinstance(value, str) and bool(_URL.match(value.strip()))


def file_url_path(value: str) -> str | None:
    """The local path of a ``file://`` URL (None for other schemes)."""
    from urllib.parse import unquote, urlparse
    from urllib.request import url2pathname

    parsed = urlparse(value.strip())
    if parsed.scheme.lower() != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return url2pathname(unquote(parsed.path))
