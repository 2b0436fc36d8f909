"""Exact k-nearest-neighbour search on unit vectors, with self-exclusion *by index*.

For unit vectors, cosine distance (1 - a.b) and squared euclidean distance (2 - 2 a.b) order neighbours
identically, so one similarity search serves both metrics; callers turn similarities into distances.
The torch backend streams the query in chunks (memory O(chunk * n_ref + n * k), never an N x N matrix);
the faiss backend (``pip install 'lemon[faiss]'``) uses an exact inner-product index.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from lemon.errors import LemonError, MissingDependencyError
from lemon.methods import KNN_BACKENDS, check_k

log = logging.getLogger(__name__)
_CHUNK_BYTES = 256 * 2**20  # similarity block per chunk
#: square block side of the symmetric self-search (64 MiB of float32 similarities)
_SELF_BLOCK = 4096


def knn(
    query: np.ndarray,
    ref: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    backend: str = "torch",
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """k most similar reference rows for each query row (inner product of unit vectors).

    Parameters
    ----------
    query : (n, d) float32, unit rows
    ref : (m, d) float32, unit rows
    k : number of neighbours; must be < m (one reference row may be excluded per query)
    exclude : (n,) int, reference row to skip for each query (its own row when the query is in the
        reference set), -1 for none. Exclusion is by index, so duplicates of the query still count.
    backend : 'torch' or 'faiss'

    Returns
    -------
    sim : (n, k) float32 similarities, descending per row
    idx : (n, k) int64 reference row ids
    """
    check_k(k, len(ref))
    if exclude is not None and len(exclude) != len(query):
        raise LemonError(
            f"exclude must have one entry per query, got {len(exclude)} for {len(query)}."
        )
    if backend == "torch":
        if _is_self_search(query, ref, exclude):
            return _knn_torch_self(ref, k, torch.device(device))
        return _knn_torch(query, ref, k, exclude, torch.device(device))
    if backend == "faiss":
        return _knn_faiss(query, ref, k, exclude)
    raise LemonError(f"Unknown knn backend '{backend}'. Available: {', '.join(KNN_BACKENDS)}.")


def _knn_torch(
    query: np.ndarray, ref: np.ndarray, k: int, exclude: np.ndarray | None, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    ref_t = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32)).to(device)
    q_all = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    n = len(query)
    chunk = max(1, min(n, _CHUNK_BYTES // (4 * len(ref))))
    sims = np.empty((n, k), dtype=np.float32)
    idxs = np.empty((n, k), dtype=np.int64)
    excl_t = None if exclude is None else torch.from_numpy(np.asarray(exclude, dtype=np.int64))
    with torch.inference_mode():
        for start in tqdm(
            range(0, n, chunk),
            desc="kNN",
            unit="chunk",
            leave=False,
            disable=None if n > 4 * chunk else True,
        ):
            stop = min(n, start + chunk)
            block = q_all[start:stop].to(device) @ ref_t.T
            if excl_t is not None:
                ex = excl_t[start:stop].to(device)
                rows = torch.nonzero(ex >= 0).squeeze(1)
                block[rows, ex[rows]] = -math.inf
            top = torch.topk(block, k, dim=1, largest=True, sorted=True)
            sims[start:stop] = top.values.cpu().numpy()
            idxs[start:stop] = top.indices.cpu().numpy()
    return sims, idxs


def _is_self_search(query: np.ndarray, ref: np.ndarray, exclude: np.ndarray | None) -> bool:
    """The query set is the reference set itself, each row excluding its own index (the train split)."""
    return (
        exclude is not None
        and query.shape == ref.shape
        and len(ref) > _SELF_BLOCK
        and np.array_equal(exclude, np.arange(len(ref)))
        and (query is ref or np.array_equal(query, ref))
    )


def _merge_topk(
    best_v: torch.Tensor,
    best_i: torch.Tensor,
    rows: slice,
    block: torch.Tensor,
    offset: int,
    k: int,
) -> None:
    """Fold a similarity block (its columns are reference rows ``offset``...) into rows' running top-k."""
    top = torch.topk(block, min(k, block.shape[1]), dim=1, largest=True, sorted=False)
    cand_v = torch.cat([best_v[rows], top.values], dim=1)
    cand_i = torch.cat([best_i[rows], top.indices + offset], dim=1)
    keep = torch.topk(cand_v, k, dim=1, largest=True, sorted=True)
    best_v[rows] = keep.values
    best_i[rows] = torch.gather(cand_i, 1, keep.indices)


def _knn_torch_self(x: np.ndarray, k: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Self-search of a reference set, each row excluding itself: the similarity matrix is symmetric, so only
    the blocks on and above the diagonal are multiplied, and each off-diagonal block serves its rows and,
    transposed, its columns — about half the matmul work of the general path, same neighbours (up to ties)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    n = len(xt)
    best_v = torch.full((n, k), -math.inf, dtype=torch.float32, device=device)
    best_i = torch.zeros((n, k), dtype=torch.int64, device=device)
    starts = range(0, n, _SELF_BLOCK)
    with torch.inference_mode():
        for i0 in tqdm(
            starts,
            desc="kNN",
            unit="block-row",
            leave=False,
            disable=None if n > 4 * _SELF_BLOCK else True,
        ):
            rows_i = slice(i0, min(n, i0 + _SELF_BLOCK))
            for j0 in range(i0, n, _SELF_BLOCK):
                rows_j = slice(j0, min(n, j0 + _SELF_BLOCK))
                block = xt[rows_i] @ xt[rows_j].T
                if j0 == i0:
                    block.fill_diagonal_(-math.inf)  # exclusion by index: the row itself
                _merge_topk(best_v, best_i, rows_i, block, j0, k)
                if j0 != i0:
                    _merge_topk(
                        best_v, best_i, rows_j, block.T.contiguous(), i0, k
                    )  # row-wise topk is faster
    return best_v.cpu().numpy(), best_i.cpu().numpy()


def _knn_faiss(
    query: np.ndarray, ref: np.ndarray, k: int, exclude: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "faiss is not installed; install 'lemon[faiss]' or use --knn_backend torch."
        ) from err
    index = faiss.IndexFlatIP(ref.shape[1])
    index.add(np.ascontiguousarray(ref, dtype=np.float32))
    extra = 0 if exclude is None else 1
    sim, idx = index.search(np.ascontiguousarray(query, dtype=np.float32), k + extra)
    if exclude is None:
        return sim, idx.astype(np.int64)
    # drop the excluded id where it was returned, else the last (k+1-th) hit
    hit = idx == np.asarray(exclude)[:, None]
    drop = np.where(hit.any(axis=1), hit.argmax(axis=1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(len(idx)), drop] = False
    return sim[keep].reshape(len(idx), k), idx[keep].reshape(len(idx), k).astype(np.int64)
