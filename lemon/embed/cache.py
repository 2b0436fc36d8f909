"""Content-keyed embedding cache shared by every run and sweep job.

Layout: ``<cache_root>/embeddings/<embedder id>/<content hash>.npy`` plus a ``.json`` sidecar (model,
preprocessing, kind, n, dim, dtype). The hash covers the embedder id, its preprocessing, the kind
('image' / 'text'), the exact ordered list of inputs (image ids or texts) and, for images, a fingerprint of
their content (pixels, or each file's size and mtime: an image replaced under the same path is embedded
again), so a change of noise re-embeds only the texts, and 96 jobs of a grid over k / distance / ablation /
seed embed each split once.
Rows are stored unit-normalised and read back memory-mapped (see :class:`EmbeddingCache`). Files are
written atomically; concurrent jobs wanting the same entry serialise on a lock file (where the OS has
``fcntl``) and the later ones read what the first one wrote. The sidecar stores the sha256 of the array's
bytes; every read verifies it, and an entry that does not match (a file damaged in place, or written before
checksums existed) is recomputed with a warning, never used. ``python -m lemon.embed`` fills the same
entries from shards embedded in parallel (:mod:`lemon.embed.shards`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from lemon.core.io import atomic_write_json, file_lock
from lemon.core.npy import NpyWriter

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


def content_key(
    model_id: str, preprocessing: str, kind: str, inputs: Sequence[str], content: str = ""
) -> str:
    """sha256 of (model id, preprocessing, kind, exact ordered inputs, content fingerprint of what the inputs
    name — e.g. the image files' sizes and mtimes): the entry's file name."""
    h = hashlib.sha256()
    h.update(
        json.dumps([CACHE_FORMAT, model_id, preprocessing, kind, len(inputs), content]).encode()
    )
    h.update(json.dumps([str(x) for x in inputs], ensure_ascii=False).encode())
    return h.hexdigest()[:32]


def checksum(array: np.ndarray, block_rows: int = 65536) -> str:
    """sha256 of an array's bytes (C order), read block by block (a memory-mapped entry is never copied
    whole): what a cache entry's sidecar records and each read verifies."""
    h = hashlib.sha256()
    for start in range(0, max(len(array), 1), block_rows):
        h.update(np.ascontiguousarray(array[start : start + block_rows]).data)
    return h.hexdigest()


def unit_or_invalid(x: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit norm (exactly as :func:`lemon.data.features.normalize_rows` scales them);
    rows that are not finite or have zero norm (an image that could not be decoded) are left as they are,
    for the caller to drop and count."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    ok = np.isfinite(norms) & (norms > 0)
    out = x.copy()
    out[ok] = (x[ok] / norms[ok, None]).astype(np.float32)
    return out


class EmbeddingCache:
    """Read-through cache of (n, dim) embedding arrays; ``root=None`` disables it.

    Entries hold unit-norm rows (float32, or float16 when written so by ``python -m lemon.embed
    --dtype float16``) and are returned memory-mapped: a split of millions of pairs is read as it is used,
    never copied whole. Entries written before rows were normalised here still load (the features
    normalise them). ``hits`` / ``misses`` count lookups since construction (logged, and used by tests).
    """

    def __init__(self, root: Path | str | None) -> None:
        self.root = None if root is None else Path(root) / "embeddings"
        self.hits = 0
        self.misses = 0

    def paths(self, model_id: str, key: str) -> tuple[Path, Path]:
        folder = self.root / model_id  # type: ignore[operator]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def key(self, embedder, kind: str, inputs: Sequence[str], content: str = "") -> str:
        """The entry name of ``inputs`` embedded by ``embedder`` (see :func:`content_key`)."""
        return content_key(embedder.id, embedder.preprocessing, kind, inputs, content)

    def lock(self, model_id: str, key: str):
        """The lock serialising writers of one entry."""
        npy, _ = self.paths(model_id, key)
        return file_lock(npy.parent / ".locks" / f"{key}.lock")

    def load(self, model_id: str, key: str) -> np.ndarray | None:
        """The cached array, memory-mapped, or None when absent or damaged (then recomputed)."""
        return self.read(model_id, key)[0]

    def read(self, model_id: str, key: str) -> tuple[np.ndarray | None, str | None]:
        """``(array, None)`` for a verified entry (memory-mapped), ``(None, None)`` when absent,
        ``(None, why)`` when it cannot be trusted: unreadable, its shape or checksum not the sidecar's, or
        no checksum."""
        if self.root is None:
            return None, None
        npy, meta = self.paths(model_id, key)
        if not (npy.is_file() and meta.is_file()):
            return None, None
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            return None, f"is unreadable ({err})"
        if not isinstance(info, dict) or array.shape != (info.get("n"), info.get("dim")):
            return None, f"has shape {array.shape}, not the one its sidecar records"
        if "sha256" not in info:
            return None, "has no checksum (written by an older lemon)"
        if checksum(array) != info["sha256"]:
            return None, "does not match its checksum (damaged on disk)"
        return array, None

    def store(
        self,
        embedder,
        kind: str,
        inputs: Sequence[str],
        key: str,
        blocks: Iterable[np.ndarray],
        n: int,
        dim: int,
        dtype: str = "float32",
        seconds: float = 0.0,
        unit: bool = True,
    ) -> np.ndarray:
        """Write an entry from row ``blocks`` (``n`` rows in all, unit-normalised here unless ``unit`` is
        False: outputs that are not embeddings), atomically, sidecar last; returns it memory-mapped. Call
        under :meth:`lock`."""
        npy, meta = self.paths(embedder.id, key)
        digest = hashlib.sha256()
        with NpyWriter(npy, (n, dim), dtype) as writer:
            for block in blocks:
                rows = np.ascontiguousarray(unit_or_invalid(block) if unit else block, dtype=dtype)
                writer.write(rows)
                digest.update(rows.data)
        atomic_write_json(
            meta,
            {
                "model": embedder.name,
                "model_id": embedder.id,
                "preprocessing": embedder.preprocessing,
                "kind": kind,
                "n": int(n),
                "dim": int(dim),
                "dtype": dtype,
                "normalized": unit,
                "sha256": digest.hexdigest(),
                "format": CACHE_FORMAT,
                "first_input": str(inputs[0]) if len(inputs) else None,
                "seconds": round(seconds, 3),
            },
        )
        return np.load(npy, mmap_mode="r", allow_pickle=False)

    def get_or_compute(
        self,
        embedder,
        kind: str,
        inputs: Sequence[str],
        compute: Callable[[], np.ndarray],
        content: str = "",
        unit: bool = True,
    ) -> np.ndarray:
        """Embeddings of ``inputs`` from the cache, else ``compute()`` (then stored, atomically).

        ``content`` fingerprints what the inputs refer to when they are references (image ids); texts are
        their own content. ``unit=False`` stores the rows as computed (model outputs, not embeddings)."""
        if self.root is None:
            self.misses += 1
            return compute()
        key = self.key(embedder, kind, inputs, content)
        array = self.load(embedder.id, key)
        if array is None:
            npy, _ = self.paths(embedder.id, key)
            with self.lock(embedder.id, key):
                # another job may have written (or repaired) it meanwhile
                array, problem = self.read(embedder.id, key)
                if array is None:
                    if problem:
                        log.warning("cache entry %s %s; recomputing it", npy, problem)
                    self.misses += 1
                    start = time.time()
                    array = np.asarray(compute(), dtype=np.float32)
                    if array.ndim != 2 or array.shape[0] != len(inputs):
                        raise RuntimeError(
                            f"embedder {embedder.name} returned {array.shape[0]} rows for "
                            f"{len(inputs)} {kind} inputs"
                        )
                    array = self.store(
                        embedder,
                        kind,
                        inputs,
                        key,
                        [array],
                        len(array),
                        array.shape[1],
                        seconds=time.time() - start,
                        unit=unit,
                    )
                    log.info(
                        "embedded %d %s inputs with %s -> %s",
                        len(inputs),
                        kind,
                        embedder.name,
                        self.paths(embedder.id, key)[0],
                    )
                    return array
        self.hits += 1
        log.info("cache hit: %d %s embeddings of %s", len(inputs), kind, embedder.name)
        return array
