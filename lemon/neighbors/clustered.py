"""Approximate search at matrix-multiply speed: an IVF index whose lists are scanned by GEMMs (``ivf_gemm``).

faiss's IVF scans each query's lists one query at a time with vector dot products; on a batch of a million
queries against a 50k reference that runs below exact matrix-multiply speed, whatever the recall (measured in
benchmarks/bench_scale.py and docs/scale.md). Here the reference is clustered into ``nlist`` lists by faiss's
spherical k-means; each query picks its ``nprobe`` nearest centroids; then, per chunk of queries, every
list is multiplied (one GEMM, bfloat16 where the CPU has it, float16 on a GPU) against all the chunk's
queries that probe it, the products land in one slab per chunk (lists cut into pieces of the mean list
length, so uneven lists waste little of it), each query keeps its ``k + margin`` best candidates over its
probed rows, and these are re-ranked exactly in float32, as in :mod:`lemon.neighbors.half` (centred
reference, per-query shift). A true neighbour is missed only when its list is not probed: probing every list gives exact search up to
ties. The cost is about ``nprobe / nlist`` of an exact search.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lemon.core.errors import LemonError
from lemon.neighbors.base import Searcher
from lemon.neighbors.half import _PAD, _PROBE, exact_rerank

DEFAULT_NLIST, DEFAULT_NPROBE = 32, 12
#: candidates per query beyond k for the float32 re-rank. Half the exact half-precision searcher's margin:
#: on 300k synthetic pairs (k = 30) recall@30 was the same with 16 as with 32 (image space 0.854, text space
#: 0.9997 vs 0.9998) and the search 11-22% faster; the lists not probed, not the margin, bound its recall
MARGIN = 16
_SLAB_BYTES = (
    256 * 2**20
)  # a query chunk's candidate slab (its probes are grouped by list per chunk)


class ClusteredGemm(Searcher):
    """IVF (``nlist`` spherical k-means lists, ``nprobe`` probed per query) scanned by GEMMs, float32
    re-rank; ``dtype`` 'bf16', 'fp16' or 'fp32' for the scan."""

    name = "ivf_gemm"
    exact = False

    def __init__(
        self,
        ref: np.ndarray,
        device: str | torch.device = "cpu",
        dtype: str = "fp32",
        nlist: int | None = None,
        nprobe: int | None = None,
        seed: int = 0,
        margin: int = MARGIN,
    ) -> None:
        from lemon.neighbors.faiss_index import import_faiss

        faiss = import_faiss()
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        m, d = self.ref.shape
        self.nlist = max(1, min(nlist or DEFAULT_NLIST, m // 39 or 1))
        self.nprobe = max(1, min(self.nlist, nprobe or DEFAULT_NPROBE))
        self.device = torch.device(device)
        self.dtype_name = dtype
        self.margin = margin
        kmeans = faiss.Kmeans(d, self.nlist, niter=20, seed=1234 + seed, spherical=True)
        kmeans.train(self.ref)
        with torch.inference_mode():
            ref32 = torch.from_numpy(self.ref).to(self.device)
            self.centroids = torch.from_numpy(kmeans.centroids.copy()).to(self.device)
            assign = (ref32 @ self.centroids.T).argmax(dim=1)
            self.perm = torch.argsort(assign, stable=True)  # sorted position -> reference row
            self.position = torch.empty_like(self.perm)
            self.position[self.perm] = torch.arange(m, device=self.device)
            counts = torch.bincount(assign, minlength=self.nlist).cpu()
            self.offsets = [0, *np.cumsum(counts.numpy()).tolist()]
            # k-means lists are uneven (the longest about 3x the mean): each list is cut into pieces of at
            # most the mean length, and a query's candidate slab holds the pieces of the lists it probes
            self.piece = max(1, math.ceil(m / self.nlist))
            self.pieces = ((counts + self.piece - 1) // self.piece).to(self.device)  # per list
            self.max_slots = max(1, int(torch.topk(self.pieces, self.nprobe).values.sum()))
            self.sorted32 = ref32[self.perm]
            self.mu = self.sorted32.mean(dim=0)
            if dtype == "fp32":
                self.scan = self.sorted32
            else:
                half = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
                self.scan = torch.zeros((m, d + _PAD), dtype=half, device=self.device)
                self.scan[:, :d] = (self.sorted32 - self.mu).to(half)
                self.scan[:, d] = 1.0
            pick = np.random.default_rng(seed).choice(m, min(m, _PROBE), replace=False)
            self.probe = ref32[torch.from_numpy(np.sort(pick)).to(self.device)]

    def describe(self) -> str:
        return (
            f"ivf_gemm nlist={self.nlist} nprobe={self.nprobe} ({self.dtype_name} scan, float32 "
            "re-rank)"
        )

    def _queries(self, q32: torch.Tensor) -> torch.Tensor:
        """The chunk's queries in the scan's precision (with the shift coordinate for half precision)."""
        if self.dtype_name == "fp32":
            return q32
        d = q32.shape[1]
        shift = (q32 @ self.probe.T).amax(dim=1) - q32 @ self.mu
        qh = torch.zeros((len(q32), d + _PAD), dtype=self.scan.dtype, device=self.device)
        qh[:, :d] = q32.to(self.scan.dtype)
        qh[:, d] = (-shift).to(self.scan.dtype)
        return qh

    def _search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(query)
        per_list = k + self.margin
        sims = np.empty((n, k), dtype=np.float32)
        idxs = np.empty((n, k), dtype=np.int64)
        with torch.inference_mode():
            chunk = max(1, _SLAB_BYTES // (2 * self.max_slots * self.piece))
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                q32 = torch.from_numpy(np.array(query[start:stop], dtype=np.float32))
                q32 = q32.to(self.device)
                own = None
                if exclude is not None:
                    ex = torch.from_numpy(np.asarray(exclude[start:stop], dtype=np.int64))
                    ex = ex.to(self.device)
                    own = torch.where(ex >= 0, self.position[ex.clamp(min=0)], -1)
                cand = self._candidates(q32, own, per_list)
                if bool(((cand >= 0).sum(dim=1) < k).any()):
                    raise LemonError(
                        f"{self.describe()}: some queries found fewer than k={k} neighbours in the "
                        "lists they probed; raise --knn_nprobe (or lower --knn_nlist)."
                    )
                v, i = exact_rerank(self.sorted32, q32, cand, k)
                sims[start:stop] = v.cpu().numpy()
                idxs[start:stop] = self.perm[i].cpu().numpy()
        return sims, idxs

    def _candidates(self, q32: torch.Tensor, own: torch.Tensor | None, per_list: int):
        """(c, per_list) sorted positions of each query's best rows over its probed lists (-1: none).

        Each list's GEMM output is cut into its pieces and written into one (c, slots, piece) slab, each
        query's probed pieces side by side, so a single top-k over each query's probed rows picks the
        candidates (a top-k per list, over short rows, costs more)."""
        c = len(q32)
        probes = torch.topk(q32 @ self.centroids.T, self.nprobe, dim=1).indices  # (c, nprobe)
        qs = self._queries(q32)
        n_pieces = self.pieces[probes]  # (c, nprobe)
        first_slot = torch.cumsum(n_pieces, dim=1) - n_pieces  # slot of each probe's first piece
        slots = max(1, int(n_pieces.sum(dim=1).max()))
        slab = torch.full(
            (c, slots, self.piece), -math.inf, dtype=self.scan.dtype, device=self.device
        )
        slot_start = torch.zeros((c, slots), dtype=torch.int64, device=self.device)
        flat = probes.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.nlist).tolist()
        rows, ranks = order // self.nprobe, order % self.nprobe
        at = 0
        for lst, count in enumerate(counts):  # one GEMM per list: its rows x the queries probing it
            r, j = rows[at : at + count], ranks[at : at + count]
            at += count
            lo, hi = self.offsets[lst], self.offsets[lst + 1]
            if not count or hi == lo:
                continue
            block = qs[r] @ self.scan[lo:hi].T
            if own is not None:  # a query's own reference row, when it is in this list
                mine = (own[r] >= lo) & (own[r] < hi)
                block[mine.nonzero().squeeze(1), own[r][mine] - lo] = -math.inf
            slot = first_slot[r, j]
            for a in range(0, hi - lo, self.piece):
                b = min(hi - lo, a + self.piece)
                slab[r, slot, : b - a] = block[:, a:b]
                slot_start[r, slot] = lo + a
                slot = slot + 1
        best = torch.topk(slab.view(c, -1), min(per_list, slots * self.piece), dim=1)
        slot, column = best.indices // self.piece, best.indices % self.piece
        return torch.where(torch.isfinite(best.values), slot_start.gather(1, slot) + column, -1)
