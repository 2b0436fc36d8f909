"""Exact search in torch: float32 matmul + top-k, streamed over query chunks.

Memory O(chunk * n_ref + n * k), never an N x N matrix; a query read from a memory map is read chunk by
chunk.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from lemon.neighbors.base import Searcher

log = logging.getLogger(__name__)
_CHUNK_BYTES = 256 * 2**20  # similarity block per chunk (CPU; 8x that on a GPU)
#: square block side of the symmetric self-search (64 MiB of float32 similarities)
_SELF_BLOCK = 4096


def block_bytes(device: torch.device) -> int:
    """Bytes of one query chunk's similarity block: larger on a GPU, where a chunk's launch and top-k
    overheads only amortise over thousands of rows."""
    return _CHUNK_BYTES * (8 if device.type == "cuda" else 1)


class TorchExact(Searcher):
    """Exact search by float32 matmul + top-k in torch (CPU or CUDA), the query streamed in chunks.

    On the CPU, when the query *is* the reference (the train split searching itself, each row excluding its
    own index) only the blocks on and above the diagonal of the symmetric similarity matrix are multiplied.
    """

    name = "torch"
    exact = True

    def __init__(self, ref: np.ndarray, device: str | torch.device = "cpu") -> None:
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        self.device = torch.device(device)
        self._ref_t: torch.Tensor | None = None

    def _search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.device.type == "cpu" and _is_self_search(query, self.ref, exclude):
            return _knn_torch_self(self.ref, k, self.device)
        if self._ref_t is None:
            self._ref_t = torch.from_numpy(self.ref).to(self.device)
        return _knn_torch(query, self._ref_t, k, exclude, self.device)


def _knn_torch(
    query: np.ndarray, ref_t: torch.Tensor, k: int, exclude: np.ndarray | None, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    n = len(query)
    chunk = max(1, min(n, block_bytes(device) // (4 * len(ref_t))))
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
            q = np.array(query[start:stop], dtype=np.float32)  # a writable copy of the chunk
            block = torch.from_numpy(q).to(device) @ ref_t.T
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
