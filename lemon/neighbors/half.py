"""Exact search at half-precision speed: float16/bfloat16 matmul for candidates, float32 re-rank.

GPUs multiply float16/bfloat16 matrices an order of magnitude faster than float32 (tensor cores), and CPUs
with AVX512-BF16 or AMX about twice as fast. Half precision cannot rank neighbours itself: similarities
near 0.9 are quantised in steps of 2^-11 (float16) or 2^-8 (bfloat16), so neighbours tie. Here the half
matmul only proposes ``k + margin`` candidates per query and their similarities are then recomputed in
float32: the result equals the float32 search up to ties, as long as every true neighbour is among the
candidates.

Two shifts keep the half-precision outputs small where it matters, without changing any ranking: the
reference is centred on its mean (q.r = q.(r - mu) + q.mu, and q.mu is the same for every r), and each
query carries an extra coordinate subtracting its best similarity to a fixed sample of the reference
(roughly its ~k-th neighbour's), so outputs near the top-k boundary are close to 0, where half precision
is finest. Products accumulate in float32 (tensor cores and oneDNN alike).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lemon.neighbors.base import Searcher
from lemon.neighbors.exact import TorchExact, block_bytes

_PAD = 16  # extra columns (shift coordinate + zeros): keeps the inner dimension a multiple of 16
_PROBE = 1024  # reference rows whose best similarity sets each query's shift
_RERANK_ROWS = 256  # queries per float32 re-rank gather (bounds the (rows, k + margin, d) buffer)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def default_margin(k: int) -> int:
    """Extra candidates per query beyond k: k more, at least 32 (recall 1.0 in the measurements)."""
    return max(32, k)


class TorchHalf(Searcher):
    """Half-precision candidates (``dtype`` 'fp16' or 'bf16'), float32 re-rank; exact up to ties."""

    exact = True

    def __init__(
        self,
        ref: np.ndarray,
        device: str | torch.device = "cpu",
        dtype: str = "fp16",
        margin: int | None = None,
        seed: int = 0,
    ) -> None:
        self.name = f"torch_{dtype}"
        self.ref = np.ascontiguousarray(ref, dtype=np.float32)
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.margin = margin
        m, d = self.ref.shape
        with torch.inference_mode():
            self.ref32 = torch.from_numpy(self.ref).to(self.device)
            self.mu = self.ref32.mean(dim=0)
            self.refh = torch.zeros((m, d + _PAD), dtype=self.dtype, device=self.device)
            self.refh[:, :d] = (self.ref32 - self.mu).to(self.dtype)
            self.refh[:, d] = 1.0
            pick = np.random.default_rng(seed).choice(m, min(m, _PROBE), replace=False)
            self.probe = self.ref32[torch.from_numpy(np.sort(pick)).to(self.device)]

    def describe(self) -> str:
        margin = "k" if self.margin is None else self.margin
        return f"{self.name} (candidates k + {margin}, float32 re-rank)"

    def _search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n, (m, d) = len(query), self.ref.shape
        n_cand = k + (default_margin(k) if self.margin is None else self.margin)
        if (
            n_cand >= m - 1
        ):  # the candidates would be (nearly) the whole reference: search it exactly
            return TorchExact(self.ref, self.device)._search(query, k, exclude)
        chunk = max(1, min(n, block_bytes(self.device) // (2 * m)))
        sims = np.empty((n, k), dtype=np.float32)
        idxs = np.empty((n, k), dtype=np.int64)
        with torch.inference_mode():
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                rows = np.array(query[start:stop], dtype=np.float32)  # a writable copy of the chunk
                q32 = torch.from_numpy(rows).to(self.device)
                shift = (q32 @ self.probe.T).amax(dim=1) - q32 @ self.mu
                qh = torch.zeros((stop - start, d + _PAD), dtype=self.dtype, device=self.device)
                qh[:, :d] = q32.to(self.dtype)
                qh[:, d] = (-shift).to(self.dtype)
                block = qh @ self.refh.T  # = q.r - q.mu - shift, in half precision
                if exclude is not None:
                    ex = torch.from_numpy(np.asarray(exclude[start:stop], dtype=np.int64))
                    ex = ex.to(self.device)
                    own = torch.nonzero(ex >= 0).squeeze(1)
                    block[own, ex[own]] = -math.inf
                cand = torch.topk(block, n_cand, dim=1, largest=True, sorted=False).indices
                del block
                v, i = exact_rerank(self.ref32, q32, cand, k)
                sims[start:stop], idxs[start:stop] = v.cpu().numpy(), i.cpu().numpy()
        return sims, idxs


def exact_rerank(
    ref32: torch.Tensor, q32: torch.Tensor, cand: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact float32 similarities of each query's candidate rows of ``ref32`` (-1: no candidate); the top k
    of them, sorted. Gathers :data:`_RERANK_ROWS` queries' candidates at a time (a bounded buffer)."""
    vals = torch.empty((len(cand), k), dtype=torch.float32, device=ref32.device)
    ids = torch.empty((len(cand), k), dtype=torch.int64, device=ref32.device)
    n_cand, d = cand.shape[1], ref32.shape[1]
    buf = torch.empty((_RERANK_ROWS * n_cand, d), dtype=torch.float32, device=ref32.device)
    for s in range(0, len(cand), _RERANK_ROWS):
        c = cand[s : s + _RERANK_ROWS]
        rows = torch.index_select(ref32, 0, c.clamp(min=0).reshape(-1), out=buf[: c.numel()])
        exact = torch.bmm(rows.view(len(c), n_cand, d), q32[s : s + len(c), :, None]).squeeze(2)
        exact = exact.masked_fill(c < 0, -math.inf)
        top = torch.topk(exact, k, dim=1, largest=True, sorted=True)
        vals[s : s + len(c)] = top.values
        ids[s : s + len(c)] = torch.gather(c, 1, top.indices)
    return vals, ids
