"""The searcher contract: an index over the reference set, built once, queried chunk after chunk."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lemon.core.errors import LemonError

#: nearest-neighbour search backends (lemon.neighbors): auto, exact (torch, its half-precision candidates
#: re-ranked in float32, faiss flat) and approximate (IVF scanned by GEMMs, faiss IVF, HNSW)
KNN_BACKENDS: tuple[str, ...] = (
    "auto",
    "torch",
    "torch_fp16",
    "torch_bf16",
    "faiss",
    "ivf_gemm",
    "ivf",
    "hnsw",
)


def check_k(k: int, n_reference: int) -> None:
    """The one check of k against the reference set: a query may exclude itself, so k < n_reference."""
    if k < 1:
        raise LemonError(f"knn_k must be >= 1, got {k}.")
    if k >= n_reference:
        raise LemonError(
            f"knn_k={k} but the reference set has {n_reference} samples (k must be < {n_reference}); "
            "pass a smaller --knn_k."
        )


class Searcher:
    """k most similar reference rows (inner product of unit vectors) for each query row.

    Built once per reference set (an index, a tensor on the device) and then queried any number of times,
    e.g. once per streamed chunk. ``exact``: whether results are the exact float32 neighbours (up to ties);
    approximate searchers have their recall measured by the caller.
    """

    name: str  # set by the class, or per instance (TorchHalf names its dtype)
    exact: ClassVar[bool]
    ref: np.ndarray

    def search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of each query row.

        Parameters
        ----------
        query : (n, d) float32, unit rows (a memory map is read chunk by chunk)
        k : number of neighbours; must be < the reference size (one row may be excluded per query)
        exclude : (n,) int, reference row each query must skip (its own row when the query is in the
            reference set), -1 for none. Exclusion is by index, so duplicates of the query still count.

        Returns
        -------
        sim : (n, k) float32 similarities, descending per row
        idx : (n, k) int64 reference row ids
        """
        check_k(k, len(self.ref))
        if exclude is not None and len(exclude) != len(query):
            raise LemonError(
                f"exclude must have one entry per query, got {len(exclude)} for {len(query)}."
            )
        if len(query) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return self._search(query, k, exclude)

    def _search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        """The searcher and its settings, for the log and the run summary."""
        return self.name


def drop_excluded(
    sim: np.ndarray, idx: np.ndarray, exclude: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """From k+1 hits per row (best first), drop the excluded id where it was returned, else the last hit.

    Rows an index could not fill (id -1, e.g. an IVF probe of too few lists) keep their -1 ids.
    """
    if exclude is None:
        return sim[:, :k], idx[:, :k].astype(np.int64)
    hit = idx == np.asarray(exclude)[:, None]
    drop = np.where(hit.any(axis=1), hit.argmax(axis=1), idx.shape[1] - 1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(len(idx)), drop] = False
    n = len(idx)
    return sim[keep].reshape(n, -1)[:, :k], idx[keep].reshape(n, -1)[:, :k].astype(np.int64)
