"""Embedding arrays larger than memory: ``.npy`` files written in row blocks and read through memory maps.

A million pairs of 512-d float32 embeddings are 4 GB per modality: they are written block by block into a
temporary file that replaces the final name only once complete (:class:`NpyWriter`; readers never see a
half-written array), read with ``np.load(mmap_mode="r")`` (:func:`open_rows`), checked in blocks
(:func:`check_rows`), and the pages a pass has finished with are handed back to the OS (:func:`release`),
so a pass over the whole array keeps only a block resident, not the file.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
from numpy.typing import DTypeLike

from lemon.core.errors import LemonError

#: rows per block of the passes over a memory-mapped array (64k rows of 512 float32 = 128 MiB)
BLOCK_ROWS = 65536
#: rows of a memory map gathered at once by take_rows before their pages are handed back
GATHER_ROWS = 4096
#: how far from 1 a stored row's norm may be and still count as unit-normalised, per storage dtype
UNIT_TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 2e-3}


def blocks(n: int, size: int = BLOCK_ROWS) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive row blocks covering ``range(n)``."""
    for start in range(0, n, size):
        yield start, min(n, start + size)


class NpyWriter:
    """Write an ``(n, *row_shape)`` array to ``path`` as ``.npy``, one block of rows at a time, atomically.

    The header is written first, rows are appended as they come, and :meth:`close` checks that exactly
    ``n`` rows arrived, syncs, and moves the temporary file onto ``path``. Leaving the ``with`` block on an
    exception deletes the temporary file and leaves ``path`` as it was.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: DTypeLike):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False}
        np.lib.format.write_array_header_2_0(self._file, {**header, "shape": self.shape})

    def write(self, block: np.ndarray) -> None:
        """Append rows (cast to the file's dtype); more rows than announced is an error."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:]:
            raise ValueError(
                f"{self.path.name}: rows of shape {block.shape[1:]}, expected {self.shape[1:]}"
            )
        if self.rows + len(block) > self.shape[0]:
            raise ValueError(f"{self.path.name}: more than the announced {self.shape[0]} rows")
        self._file.write(block.data.cast("B"))
        self.rows += len(block)

    def close(self) -> Path:
        """Finish the file and move it into place; returns ``path``."""
        if self.rows != self.shape[0]:
            self.abort()
            raise ValueError(f"{self.path.name}: {self.rows} rows written of {self.shape[0]}")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (``path`` is untouched)."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def open_rows(path: str | os.PathLike) -> np.ndarray:
    """The array of a ``.npy`` file as a read-only memory map (nothing is read until rows are used)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise LemonError(
            f"Cannot read {path} as a .npy array ({err}); delete it to recompute."
        ) from err


def is_mapped(x: object) -> bool:
    """True for an array backed by a file mapping (``np.load(mmap_mode=...)`` or a slice of one)."""
    return isinstance(x, np.memmap) and getattr(x, "_mmap", None) is not None


def release(x: np.ndarray, start: int, stop: int) -> None:
    """Hand the pages holding rows ``[start, stop)`` of a memory-mapped array back to the OS.

    They stay in the page cache (a later read is a cheap soft fault), but no longer count in this process's
    resident memory: a pass over a file much larger than memory keeps about one block resident. A no-op
    for in-memory arrays.
    """
    if not is_mapped(x) or stop <= start:
        return
    # the mapping of the whole file (the array's rows start somewhere inside it)
    buf = x._mmap  # type: ignore[attr-defined]  # numpy's private attribute, absent from its stubs
    origin = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    lo = x.ctypes.data - origin + start * x.strides[0]
    hi = min(len(buf), x.ctypes.data - origin + stop * x.strides[0])
    lo -= lo % mmap.PAGESIZE
    if hi > lo and hasattr(buf, "madvise"):
        buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def take_rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``x`` as an in-memory array; a memory-mapped ``x`` is gathered GATHER_ROWS rows
    at a time, each batch's pages handed back before the next.

    A gather of scattered rows (a random reference subset, a sample) faults in pages all over the file,
    and the kernel maps a window around each fault: gathered at once, a 50,000-row sample of a
    million-row split made most of the file resident (1.2 GB more peak memory at 1e6 pairs, measured);
    batch by batch (sorted rows: a batch spans a slice of the file) only a slice is.
    """
    index = np.asarray(index)
    if not is_mapped(x):
        return np.asarray(x[index])
    if index.dtype == bool:
        index = np.flatnonzero(index)
    index = np.where(index < 0, index + len(x), index)
    rows = np.empty((len(index), *x.shape[1:]), dtype=x.dtype)
    for start, stop in blocks(len(index), GATHER_ROWS):
        part = index[start:stop]
        rows[start:stop] = x[part]
        release(x, int(part.min()), int(part.max()) + 1)
    return rows


def finite_rows(x: np.ndarray) -> np.ndarray:
    """(n,) bool: rows whose values are all finite, checked block by block (no (n, d) temporary; a
    memory-mapped ``x`` keeps about one block resident)."""
    out = np.empty(len(x), dtype=bool)
    for start, stop in blocks(len(x)):
        out[start:stop] = np.isfinite(x[start:stop]).all(axis=1)
        release(x, start, stop)
    return out


def check_rows(x: np.ndarray, what: str) -> bool:
    """Check a (memory-mapped) embedding array in blocks: finite rows of non-zero norm.

    Returns whether every row is unit-norm within the tolerance of its dtype (then it can be used as it is,
    without a normalised copy). Raises LemonError naming the first bad row otherwise.
    """
    if x.ndim != 2:
        raise LemonError(f"{what} must be a 2-D array (n, d), got shape {x.shape}.")
    tol = UNIT_TOLERANCE.get(np.dtype(x.dtype))
    unit = tol is not None
    for start, stop in blocks(len(x)):
        rows = np.asarray(x[start:stop], dtype=np.float64)
        norms = np.sqrt(np.einsum("nd,nd->n", rows, rows))
        bad = ~np.isfinite(norms)
        if bad.any():
            raise LemonError(
                f"{what} has NaN/inf values (first: row {start + int(np.flatnonzero(bad)[0])}); "
                "drop or re-embed those samples."
            )
        zero = norms == 0
        if zero.any():
            raise LemonError(
                f"{what} has zero-norm rows (first: row {start + int(np.flatnonzero(zero)[0])}); a "
                "zero vector has no direction to compare."
            )
        unit = unit and bool(np.all(np.abs(norms - 1.0) <= tol))
        release(x, start, stop)
    return unit
