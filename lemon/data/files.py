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
from lemon.core.paths import quote_path
from lemon.data.base import (
    MISSING_IMAGE,
    TOO_LARGE_IMAGE,
    UNREADABLE_IMAGE,
    UNSUPPORTED_IMAGE,
    URL_IMAGE,
)
from lemon.data.images import MISSING, TOO_LARGE, UNREADABLE, UNSUPPORTED, URL

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
            quote_path(paths[bad[0]]),
        )


#: reason code of an image (lemon.data.images) -> the reason dropped.csv gives
REASON_NAMES = {
    MISSING: MISSING_IMAGE,
    UNREADABLE: UNREADABLE_IMAGE,
    TOO_LARGE: TOO_LARGE_IMAGE,
    UNSUPPORTED: UNSUPPORTED_IMAGE,
    URL: URL_IMAGE,
}
#: what a user can do about each kind of image that is not read (the warning's last words)
_FIXES = {
    "image too large": "--max_image_pixels N raises the limit",
    "unsupported image format": "pip install pillow-heif (HEIC) and run again",
    "URL (not downloaded)": "download them and write local paths",
}


def fixes(reasons: Sequence[str]) -> str:
    """'; <what to do>' for the reasons that have a fix (for a message ending in them), else ''."""
    found = [_FIXES[r] for r in reasons if r in _FIXES]
    return "; " + "; ".join(found) if found else ""


def warn_not_read(
    name: str, codes: np.ndarray, given: Sequence[Any] | np.ndarray, total: int | None = None
) -> None:
    """One warning line: how many images are not read and why, with the first of each kind (quoted, so a
    trailing space shows) and what to do; the reasons are those dropped.csv lists
    (``lemon.data.custom.REASON_NAMES``)."""
    codes = np.asarray(codes)
    parts = []
    for value, reason in REASON_NAMES.items():
        rows = np.flatnonzero(codes == value)
        if len(rows):
            fix = f"; {_FIXES[reason]}" if reason in _FIXES else ""
            parts.append(f"{len(rows)} {reason} (first: {quote_path(given[rows[0]])}{fix})")
    if parts:
        n = len(codes) if total is None else total
        log.warning(
            "%s: not scoring %d of %d images: %s; each is listed with its reason in dropped.csv.",
            name,
            int(np.isin(codes, list(REASON_NAMES)).sum()),
            n,
            ", ".join(parts),
        )


def list_folder(folder: Path, trees: dict[str, str]) -> dict[str, np.ndarray]:
    """Every file of an ImageFolder tree, in sorted order: ``files`` (relative posix paths), ``labels``
    (the class folder's name, '' for files outside one), ``splits`` (the tree's split) and ``status``:
    '' for an image to read, else why it is not (hidden, not an image, unsupported, no class folder).

    Hidden entries (a name starting with '.', such as .ipynb_checkpoints or .DS_Store, and
    ``__MACOSX``) are never read, nor made classes; they are listed so that every file is accounted for.
    """
    from lemon.data.base import HIDDEN_FILE, NO_CLASS_FOLDER, NOT_AN_IMAGE, UNSUPPORTED_IMAGE
    from lemon.data.images import PLUGIN_FORMATS, image_suffixes

    suffixes = image_suffixes()
    files, labels, splits, status = [], [], [], []
    for split, sub in trees.items():
        base = (folder / sub).resolve() if sub != "." else folder
        for root, dirs, names in os.walk(base, followlinks=True):
            dirs.sort()
            rel_root = Path(root).relative_to(base)
            for name in sorted(names):
                rel = rel_root / name
                parts = rel.parts
                hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
                suffix = Path(name).suffix.lower()
                if hidden:
                    if suffix not in suffixes:
                        continue  # a notebook checkpoint, .DS_Store, a git object: no image
                    why = HIDDEN_FILE
                elif suffix in PLUGIN_FORMATS and suffix not in suffixes:
                    why = UNSUPPORTED_IMAGE
                elif suffix not in suffixes:
                    why = NOT_AN_IMAGE
                elif len(parts) == 1:
                    why = NO_CLASS_FOLDER
                else:
                    why = ""
                files.append((Path(sub) / rel).as_posix() if sub != "." else rel.as_posix())
                labels.append(parts[0] if len(parts) > 1 else "")
                splits.append(split)
                status.append(why)
    return {
        "files": np.asarray(files, dtype=object),
        "labels": np.asarray(labels, dtype=object),
        "splits": np.asarray(splits, dtype=object),
        "status": np.asarray(status, dtype=object),
    }


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
