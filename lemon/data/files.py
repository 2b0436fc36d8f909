"""File helpers shared by the loaders: required-path checks, cheap image readability checks, JSON reads.

Every loader states the files it needs as paths under the data root; :func:`require` turns the first missing
one into the one-line :class:`DatasetNotFoundError` that names it and the DataSources.md section. Images are
checked once at load with a header parse (``PIL.Image.open`` + ``verify``, threaded, no full decode) so
that unreadable files are dropped with a count instead of crashing the embedding stage (images whose header
is fine but whose data is not, e.g. a truncated JPEG, are caught when decoded there and dropped likewise).
Metadata files (pickles, JSON, CSV, ``.pt``) are parsed through :func:`read_metadata`, which turns any
parse failure into a one-line :class:`LemonError` naming the file and the DataSources.md section.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lemon.core.errors import DatasetNotFoundError, LemonError

log = logging.getLogger(__name__)
ROOT_HINT = "(root from --data_dir / $LEMON_DATA_DIR)"
T = TypeVar("T")
#: what parsing a damaged file raises (json/csv/unicode: ValueError; gzip: OSError; pickle/torch: the rest);
#: a structure check inside a reader may raise the lookup errors
PARSE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    pickle.UnpicklingError,
    RuntimeError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def not_found(name: str, path: Path | str, what: str = "expected") -> DatasetNotFoundError:
    """The one-line error for a missing dataset file, pointing to ``DataSources.md#name``."""
    return DatasetNotFoundError(
        f"Dataset '{name}' not found: {what} {path} {ROOT_HINT}. See DataSources.md#{name}."
    )


def require(name: str, *paths: Path) -> None:
    """Raise :func:`not_found` for the first of ``paths`` that does not exist."""
    for path in paths:
        if not Path(path).exists():
            raise not_found(name, path)


def require_any(name: str, folder: Path, pattern: str, what: str) -> list[Path]:
    """Files under ``folder`` matching ``pattern`` (recursive glob), or the not-found error."""
    require(name, folder)
    found = sorted(folder.glob(pattern))
    if not found:
        raise not_found(name, folder / pattern, f"no {what} found matching")
    return found


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def unreadable(
    name: str, path: Path | str, what: str, err: BaseException | str, expected: str = ""
) -> LemonError:
    """The one-line error for a dataset file that exists but cannot be parsed."""
    reason = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    reason = " ".join(str(reason).split())
    reason = reason if len(reason) <= 200 else reason[:197] + "..."
    hint = f" Expected {expected}." if expected else ""
    return LemonError(
        f"Dataset '{name}': cannot read {what} {path} ({reason}).{hint} See DataSources.md#{name}."
    )


def read_metadata(
    name: str, path: Path, reader: Callable[[Path], T], what: str, expected: str = ""
) -> T:
    """``reader(path)``, with any parse failure turned into :func:`unreadable`'s one-line LemonError.

    ``reader`` may check the structure too (a ``KeyError``/``TypeError`` counts as unreadable); a
    LemonError it raises passes through unchanged, and a missing file is :func:`not_found`.
    """
    try:
        return reader(Path(path))
    except LemonError:
        raise
    except FileNotFoundError as err:
        raise not_found(name, path) from err
    except PARSE_ERRORS as err:
        raise unreadable(name, path, what, err, expected) from err


def _readable(path: str) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()  # header/structure check only; no pixel decode for JPEG
        return True
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False


def readable_mask(root: Path, relpaths: Sequence[str], workers: int | None = None) -> np.ndarray:
    """(n,) bool: which images under ``root`` exist and have a valid image header (threaded, I/O bound)."""
    paths = [os.path.join(root, p) for p in relpaths]
    if not paths:
        return np.zeros(0, dtype=bool)
    workers = workers or min(16, (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        ok = list(pool.map(_readable, paths, chunksize=256))
    return np.asarray(ok, dtype=bool)


def _inspect(path: str) -> tuple[bool, int]:
    """(readable, content id) of one file, from one read of its bytes."""
    import io

    from PIL import Image, UnidentifiedImageError

    from lemon.data.base import content_id

    try:
        with open(path, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        return True, content_id(data)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return False, 0


def inspect_images(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """(n,) bool readable (a valid image header) and (n,) uint64 content id of each file (0 when not
    readable); each file is read once, in threads."""
    if not len(paths):
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.uint64)
    workers = min(16, (os.cpu_count() or 2) * 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(_inspect, [str(p) for p in paths], chunksize=256))
    ok = np.fromiter((r for r, _ in found), dtype=bool, count=len(found))
    ids = np.fromiter((i for _, i in found), dtype=np.uint64, count=len(found))
    return ok, ids


def warn_unreadable(name: str, keep: np.ndarray, paths: Sequence[Any]) -> None:
    """Log how many images are missing or unreadable, naming the first (as the user can look it up)."""
    bad = np.flatnonzero(~np.asarray(keep, dtype=bool))
    if len(bad):
        log.warning(
            "%s: skipping %d missing or unreadable image(s) of %d (first: %s)",
            name,
            len(bad),
            len(keep),
            paths[bad[0]],
        )


def readable_bytes_mask(blobs: Iterable[bytes]) -> np.ndarray:
    """(n,) bool: which in-memory image blobs have a valid image header."""
    import io

    from PIL import Image, UnidentifiedImageError

    def ok(blob: bytes) -> bool:
        try:
            with Image.open(io.BytesIO(blob)) as img:
                img.verify()
            return True
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, TypeError):
            return False

    return np.fromiter((ok(b) for b in blobs), dtype=bool)


def keep_readable(name: str, root: Path, relpaths: Sequence[str]) -> tuple[np.ndarray, int]:
    """Boolean keep-mask over ``relpaths`` and the number of unreadable images (logged as a warning)."""
    mask = readable_mask(root, relpaths)
    skipped = int((~mask).sum())
    if skipped:
        first = relpaths[int(np.flatnonzero(~mask)[0])]
        log.warning(
            "%s: skipping %d missing or unreadable image(s) of %d (first: %s)",
            name,
            skipped,
            len(relpaths),
            Path(root) / first,
        )
    return mask, skipped
