"""Atomic run-output writing and reading: temp file + ``os.replace``; ``done`` is written last."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DONE = "done"
TEMP_SUFFIX = ".tmp"
#: what :func:`atomic_write_bytes` names its temp files: ``.<name>.<8 random characters>.tmp``
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays -> Python; NaN/inf -> None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(
            tmp, 0o644
        )  # mkstemp makes 0600; outputs are meant to be read by others (reports, Slurm)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:  # a failed write names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with numpy values converted and non-finite floats written as null."""
    atomic_write_text(path, json.dumps(_to_jsonable(obj), indent=1, allow_nan=False) + "\n")


def atomic_write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save an array atomically (``np.save`` into memory, then :func:`atomic_write_bytes`)."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Save named arrays atomically as a compressed ``.npz``."""
    buf = io.BytesIO()
    # numpy >= 2.2 types savez's keywords as arrays or its allow_pickle flag: Any matches both
    named: dict[str, Any] = arrays
    np.savez_compressed(buf, **named)
    atomic_write_bytes(path, buf.getvalue())


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def mark_done(run_dir: str | os.PathLike, wall_time_s: float) -> None:
    """Write the ``done`` marker (ISO timestamp + wall time); call only after every other output."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_text(Path(run_dir) / DONE, f"{stamp}\nwall_time_s={wall_time_s:.3f}\n")


def is_done(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / DONE).is_file()


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is a temp file of :func:`atomic_write_bytes` (left behind only by a killed writer)."""
    return bool(_TEMP_NAME.match(name))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """A file to write ``path`` through: a temp file in the same folder, moved onto ``path`` (``os.replace``)
    when the block ends without error, deleted otherwise. For outputs written piece by piece."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        text = "b" not in mode  # a text file: UTF-8, newlines written as given
        with os.fdopen(
            fd, mode, encoding="utf-8" if text else None, newline="" if text else None
        ) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed); a no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: first writer wins through os.replace instead
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
