"""faiss searchers (``pip install 'lemon[faiss]'``): exact (flat), IVF and HNSW, on the GPU with faiss-gpu.

- ``faiss``: ``IndexFlatIP``, exact.
- ``ivf``: ``IndexIVFFlat`` over inner products: the reference is clustered into ``nlist`` lists by spherical
  k-means and each query scans the ``nprobe`` lists whose centroids are nearest. Approximate: a true
  neighbour in an unprobed list is missed (recall is measured on a sample by the caller).
- ``hnsw``: ``IndexHNSWFlat``, a navigable small-world graph (CPU only); approximate, ``efSearch`` trades
  time for recall.

With faiss-gpu and a CUDA device, the flat and IVF indexes are moved to the GPU (``index_cpu_to_gpu``).
Each search asks for k + 1 hits when a query may be in the reference, and drops its own row by index.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from lemon.core.errors import LemonError, MissingDependencyError
from lemon.neighbors.base import Searcher, drop_excluded

log = logging.getLogger(__name__)


def import_faiss() -> Any:
    """The faiss module, or a one-line error saying how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise MissingDependencyError(
            "faiss is not installed; install 'lemon[faiss]' (faiss-cpu, or faiss-gpu on a GPU "
            "machine) or use --knn_backend torch."
        ) from err
    return faiss


def faiss_gpus() -> int:
    """GPUs faiss can use (0 without faiss-gpu or without a GPU)."""
    try:
        faiss = import_faiss()
    except MissingDependencyError:
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def default_nlist(n_ref: int) -> int:
    """IVF lists: about 4 * sqrt(n_ref), at most n_ref / 39 (faiss wants 39 training points per list)."""
    return max(1, min(int(round(4 * math.sqrt(n_ref))), n_ref // 39))


class _FaissSearcher(Searcher):
    """Shared search: k (+1 when excluding) hits from a faiss index, own rows dropped by index."""

    index: Any
    on_gpu: bool = False

    def _place(self, index: Any, device: str) -> Any:
        """The index on the GPU when faiss-gpu and a CUDA device are there, else as it is."""
        if not str(device).startswith("cuda") or faiss_gpus() == 0:
            return index
        faiss = import_faiss()
        gpu = int(str(device).partition(":")[2] or 0)
        self.on_gpu = True
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), gpu, index)

    def _search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(query, dtype=np.float32)
        sim, idx = self.index.search(q, k + (0 if exclude is None else 1))
        sim, idx = drop_excluded(sim, idx, exclude, k)
        short = (idx < 0).any(axis=1)
        if short.any():  # an IVF probe of lists holding fewer than k rows
            raise LemonError(
                f"{self.describe()}: {int(short.sum())} queries found fewer than k={k} neighbours "
                "in the lists they probed; raise --knn_nprobe (or lower --knn_nlist)."
            )
        return sim, idx


class FaissFlat(_FaissSearcher):
    """Exact inner-product search (``IndexFlatIP``)."""

    name = "faiss"
    exact = True

    def __init__(self, ref: np.ndarray, device: str = "cpu") -> None:
        faiss = import_faiss()
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        index = faiss.IndexFlatIP(self.ref.shape[1])
        index.add(self.ref)
        self.index = self._place(index, device)

    def describe(self) -> str:
        return "faiss IndexFlatIP" + (" (GPU)" if self.on_gpu else "")


class FaissIVF(_FaissSearcher):
    """Approximate: ``nlist`` spherical k-means lists, ``nprobe`` of them scanned per query."""

    name = "ivf"
    exact = False

    def __init__(
        self,
        ref: np.ndarray,
        device: str = "cpu",
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 0,
    ) -> None:
        faiss = import_faiss()
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        m, d = self.ref.shape
        self.nlist = nlist or default_nlist(m)
        self.nprobe = min(self.nlist, nprobe or max(1, self.nlist // 8))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # centroids on the unit sphere, like the vectors
        index.cp.seed = 1234 + seed
        index.train(self.ref)
        index.add(self.ref)
        index.nprobe = self.nprobe
        self.quantizer = quantizer  # the IVF index refers to it: keep it alive
        self.index = self._place(index, device)
        if self.on_gpu:
            self.index.nprobe = self.nprobe

    def describe(self) -> str:
        where = " (GPU)" if self.on_gpu else ""
        return f"faiss IVFFlat nlist={self.nlist} nprobe={self.nprobe}{where}"


class FaissHNSW(_FaissSearcher):
    """Approximate: an HNSW graph with ``M`` links per node, ``ef`` candidates kept while searching."""

    name = "hnsw"
    exact = False

    def __init__(self, ref: np.ndarray, M: int = 32, ef: int | None = None) -> None:
        faiss = import_faiss()
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        self.M, self.ef = M, ef
        index = faiss.IndexHNSWFlat(self.ref.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(self.ref)
        self.index = index

    def _search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        self.index.hnsw.efSearch = max(self.ef or 0, 4 * (k + 1))
        return super()._search(query, k, exclude)

    def describe(self) -> str:
        return f"faiss HNSWFlat M={self.M} efSearch={self.ef or '4(k+1)'}"
