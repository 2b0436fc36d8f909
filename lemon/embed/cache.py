"""Content-keyed embedding cache shared by every run and sweep job.

Layout: ``<cache_root>/embeddings/<embedder id>/<content hash>.npy`` plus a ``.json`` sidecar (model,
preprocessing, kind, n, dim, dtype). The hash covers the embedder id, its preprocessing, the kind
('image' / 'text'), the exact ordered list of inputs (image ids or texts) and, for images, a fingerprint of
their content (pixels, or each file's size and mtime: an image replaced under the same path is embedded
again), so a change of noise re-embeds only the texts, and 96 jobs of a grid over k / distance / ablation /
seed embed each split once.
Files are written atomically; concurrent jobs wanting the same entry serialise on a lock file (where the
OS has ``fcntl``) and the later ones read what the first one wrote. The sidecar stores the sha256 of the
array's bytes; every read verifies it, and an entry that does not match (a file damaged in place, or written
before checksums existed) is recomputed with a warning, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lemon.io import atomic_save_npy, atomic_write_json

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


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


def checksum(array: np.ndarray) -> str:
    """sha256 of an array's bytes (C order): what a cache entry's sidecar records and each read verifies."""
    return hashlib.sha256(np.ascontiguousarray(array)).hexdigest()


class EmbeddingCache:
    """Read-through cache of (n, dim) float32 embedding arrays; ``root=None`` disables it.

    ``hits`` / ``misses`` count lookups since construction (logged, and used by tests).
    """

    def __init__(self, root: Path | str | None) -> None:
        self.root = None if root is None else Path(root) / "embeddings"
        self.hits = 0
        self.misses = 0

    def paths(self, model_id: str, key: str) -> tuple[Path, Path]:
        folder = self.root / model_id  # type: ignore[operator]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def load(self, model_id: str, key: str) -> np.ndarray | None:
        """The cached array, or None when absent or damaged (then recomputed)."""
        return self.read(model_id, key)[0]

    def read(self, model_id: str, key: str) -> tuple[np.ndarray | None, str | None]:
        """``(array, None)`` for a verified entry, ``(None, None)`` when absent, ``(None, why)`` when the
        entry cannot be trusted: unreadable, its shape or checksum not the sidecar's, or no checksum."""
        if self.root is None:
            return None, None
        npy, meta = self.paths(model_id, key)
        if not (npy.is_file() and meta.is_file()):
            return None, None
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            array = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as err:
            return None, f"is unreadable ({err})"
        if not isinstance(info, dict) or array.shape != (info.get("n"), info.get("dim")):
            return None, f"has shape {array.shape}, not the one its sidecar records"
        if "sha256" not in info:
            return None, "has no checksum (written by an older lemon)"
        if checksum(array) != info["sha256"]:
            return None, "does not match its checksum (damaged on disk)"
        return array, None

    def get_or_compute(
        self,
        embedder,
        kind: str,
        inputs: Sequence[str],
        compute: Callable[[], np.ndarray],
        content: str = "",
    ) -> np.ndarray:
        """Embeddings of ``inputs`` from the cache, else ``compute()`` (then stored, atomically).

        ``content`` fingerprints what the inputs refer to when they are references (image ids); texts are
        their own content."""
        if self.root is None:
            self.misses += 1
            return compute()
        key = content_key(embedder.id, embedder.preprocessing, kind, inputs, content)
        array = self.load(embedder.id, key)
        if array is None:
            npy, meta = self.paths(embedder.id, key)
            with file_lock(npy.parent / ".locks" / f"{key}.lock"):
                # another job may have written (or repaired) it meanwhile
                array, problem = self.read(embedder.id, key)
                if array is None:
                    if problem:
                        log.warning("cache entry %s %s; recomputing it", npy, problem)
                    self.misses += 1
                    start = time.time()
                    array = np.ascontiguousarray(compute(), dtype=np.float32)
                    if array.shape[0] != len(inputs):
                        raise RuntimeError(
                            f"embedder {embedder.name} returned {array.shape[0]} rows for "
                            f"{len(inputs)} {kind} inputs"
                        )
                    atomic_save_npy(npy, array)
                    atomic_write_json(
                        meta,
                        {
                            "model": embedder.name,
                            "model_id": embedder.id,
                            "preprocessing": embedder.preprocessing,
                            "kind": kind,
                            "n": int(array.shape[0]),
                            "dim": int(array.shape[1]),
                            "dtype": str(array.dtype),
                            "sha256": checksum(array),
                            "format": CACHE_FORMAT,
                            "first_input": str(inputs[0]) if len(inputs) else None,
                            "seconds": round(time.time() - start, 3),
                        },
                    )
                    log.info(
                        "embedded %d %s inputs with %s -> %s", len(inputs), kind, embedder.name, npy
                    )
                    return array
        self.hits += 1
        log.info("cache hit: %d %s embeddings of %s", len(inputs), kind, embedder.name)
        return array
