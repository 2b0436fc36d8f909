"""k-nearest-neighbour search of unit vectors against the reference set, with self-exclusion *by index*.

For unit vectors, cosine distance (1 - a.b) and squared euclidean distance (2 - 2 a.b) order neighbours
identically, so one similarity search serves both metrics; callers turn similarities into distances.

Backends (``--knn_backend``, :data:`lemon.neighbors.base.KNN_BACKENDS`), each a :class:`Searcher` built once over
the reference set and queried chunk after chunk:

- ``torch``: exact, float32 matmul + top-k (CPU or CUDA);
- ``torch_fp16`` / ``torch_bf16``: half-precision candidates re-ranked in float32, exact up to ties; the
  fast path on GPUs (fp16) and on CPUs that multiply bfloat16 natively (:mod:`lemon.neighbors.half`);
- ``faiss``: exact ``IndexFlatIP``;
- ``ivf_gemm``: approximate, an IVF index (faiss k-means) scanned list by list with GEMMs, float32 re-rank
  (:mod:`lemon.neighbors.clustered`); ``ivf``, ``hnsw``: approximate faiss indexes. The pipeline measures
  the recall@k of every non-float32 search against exact search on a sample of queries, every run;
- ``auto`` (default): exact float32 up to :data:`EXACT_F32_MAX_PAIRS` query x reference pairs per space,
  exact with half-precision candidates (where the CPU has native bfloat16) up to
  :data:`EXACT_MAX_PAIRS`, ``ivf_gemm`` above; on a GPU float16 candidates (exact) at any size; faiss IVF
  for reference sets above :data:`APPROXIMATE_MIN_REFERENCE` rows (:func:`resolve_backend`; the choice and
  its reason are logged and printed in the run summary).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lemon.core.errors import LemonError
from lemon.neighbors.base import KNN_BACKENDS, Searcher

__all__ = [
    "APPROXIMATE_MIN_REFERENCE",
    "EXACT_F32_MAX_PAIRS",
    "EXACT_MAX_PAIRS",
    "KnnOptions",
    "Searcher",
    "build_searcher",
    "knn",
    "recall_at_k",
    "resolve_backend",
]
log = logging.getLogger(__name__)

#: ``auto``: exact float32 search up to this many query x reference pairs (per space), measured on a 2-core
#: CPU by benchmarks/bench_scale.py: below it the float32 search takes under a minute and the half-precision
#: path saves little
EXACT_F32_MAX_PAIRS = 2e9
#: ``auto`` on a CPU: exact search up to this many pairs per space (about 5e5 synthetic pairs at the 50,000
#: reference cap: some 5 minutes of bfloat16 search on 2 cores), approximate (``ivf_gemm``) above
EXACT_MAX_PAIRS = 3e10
#: ``auto``: faiss IVF for reference sets larger than this (a GPU's exact search stops paying there too)
APPROXIMATE_MIN_REFERENCE = 1_000_000


@dataclass(frozen=True)
class KnnOptions:
    """How neighbours are searched.

    backend : one of KNN_BACKENDS ('auto' chooses by size and device)
    device : 'cpu', 'cuda', 'cuda:1', ...
    nlist, nprobe : IVF lists and lists scanned per query (None: 4 sqrt(n_ref) and nlist / 8)
    hnsw_ef : HNSW candidates kept while searching (None: 4 (k + 1))
    seed : seed of the index training
    """

    backend: str = "auto"
    device: str = "cpu"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_ef: int | None = None
    seed: int = 0


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX; read from /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_backend(options: KnnOptions, n_queries: int, n_ref: int) -> tuple[str, str]:
    """The backend to use and why: ``options.backend`` unless it is 'auto'.

    ``n_queries``: query rows searched per space (all scored splits); ``n_ref``: reference rows.
    """
    if options.backend not in KNN_BACKENDS:
        raise LemonError(
            f"Unknown knn backend '{options.backend}'. Available: {', '.join(KNN_BACKENDS)}."
        )
    if options.backend != "auto":
        return options.backend, f"--knn_backend {options.backend}"
    pairs = float(n_queries) * n_ref
    size = f"{n_queries:,} queries x {n_ref:,} reference"
    cuda = str(options.device).startswith("cuda")
    if n_ref > APPROXIMATE_MIN_REFERENCE:
        from lemon.neighbors.faiss_index import import_faiss

        import_faiss()  # a clear error when it is missing
        return "ivf", f"reference of {n_ref:,} > {APPROXIMATE_MIN_REFERENCE:,} rows: approximate"
    if cuda:
        return "torch_fp16", f"{size} on CUDA: float16 candidates, float32 re-rank (exact)"
    if pairs <= EXACT_F32_MAX_PAIRS:
        return "torch", f"{size} <= {EXACT_F32_MAX_PAIRS:.0e} pairs: exact float32"
    if pairs > EXACT_MAX_PAIRS and importlib.util.find_spec("faiss") is not None:
        return "ivf_gemm", (
            f"{size} > {EXACT_MAX_PAIRS:.0e} pairs: approximate, IVF scanned by GEMMs (recall "
            "measured; --knn_backend torch_bf16 or torch for exact search)"
        )
    if cpu_has_bf16():
        return "torch_bf16", (
            f"{size} > {EXACT_F32_MAX_PAIRS:.0e} pairs: bfloat16 candidates, float32 re-rank (exact; "
            "this CPU multiplies bfloat16 natively)"
        )
    return "torch", f"{size}: exact float32 (no native bfloat16 on this CPU)"


def build_searcher(ref: np.ndarray, backend: str, options: KnnOptions | None = None) -> Searcher:
    """A searcher over ``ref`` ((m, d) float32 unit rows) for a resolved backend (not 'auto')."""
    options = options or KnnOptions(backend=backend)
    if backend == "torch":
        from lemon.neighbors.exact import TorchExact

        return TorchExact(ref, options.device)
    if backend in ("torch_fp16", "torch_bf16"):
        from lemon.neighbors.half import TorchHalf

        return TorchHalf(ref, options.device, backend.split("_")[1], seed=options.seed)
    if backend == "faiss":
        from lemon.neighbors.faiss_index import FaissFlat

        return FaissFlat(ref, options.device)
    if backend == "ivf_gemm":
        from lemon.neighbors.clustered import ClusteredGemm

        cuda = str(options.device).startswith("cuda")
        dtype = "fp16" if cuda else "bf16" if cpu_has_bf16() else "fp32"
        return ClusteredGemm(
            ref, options.device, dtype, options.nlist, options.nprobe, options.seed
        )
    if backend == "ivf":
        from lemon.neighbors.faiss_index import FaissIVF

        return FaissIVF(ref, options.device, options.nlist, options.nprobe, options.seed)
    if backend == "hnsw":
        from lemon.neighbors.faiss_index import FaissHNSW

        return FaissHNSW(ref, ef=options.hnsw_ef)
    raise LemonError(f"Unknown knn backend '{backend}'. Available: {', '.join(KNN_BACKENDS)}.")


def knn(
    query: np.ndarray,
    ref: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    backend: str = "torch",
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """k most similar reference rows for each query row, in one call (see :meth:`Searcher.search`).

    Returns (sim, idx), each (n, k): similarities descending per row and reference row ids.
    """
    options = KnnOptions(backend=backend, device=str(device))
    chosen, _ = resolve_backend(options, len(query), len(ref))
    return build_searcher(ref, chosen, options).search(query, k, exclude)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found ∩ truth| / k, for (n, k) neighbour ids (the exact ones in ``truth``)."""
    found, truth = np.asarray(found), np.asarray(truth)
    if truth.size == 0:
        return 1.0
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum()
    return float(hits) / truth.size
