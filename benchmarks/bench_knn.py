"""Neighbour search alone: exact float32 vs half-precision candidates + float32 re-rank (and faiss).

Usage:
    python benchmarks/bench_knn.py --device cuda --queries 1000000 --reference 50000 1000000
    python benchmarks/bench_knn.py --queries 20000 --reference 50000 --backends torch torch_bf16 ivf

Random unit vectors (d=512, seeded), k=30, every query excluding its own row when query and reference are
the same set (``--reference`` equal to ``--queries``: a self-search). Prints seconds, queries/s and the
recall@k of each backend against exact float32 search on 2,000 sampled queries.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def unit(n: int, d: int, seed: int) -> np.ndarray:
    """(n, d) float32 unit rows drawn in blocks (bounded float64 temporaries)."""
    out = np.empty((n, d), dtype=np.float32)
    rng = np.random.default_rng(seed)
    for s in range(0, n, 65536):
        x = rng.standard_normal((min(n, s + 65536) - s, d))
        out[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    from lemon.neighbors import KnnOptions, build_searcher, recall_at_k

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=100_000)
    p.add_argument("--reference", type=int, nargs="+", default=[50_000])
    p.add_argument("--backends", nargs="+", default=None, help="default: torch + the half path")
    p.add_argument("--device", default="cpu")
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--dim", type=int, default=512)
    args = p.parse_args(argv)
    half = "torch_fp16" if args.device.startswith("cuda") else "torch_bf16"
    backends = args.backends or ["torch", half]
    query = unit(args.queries, args.dim, 0)
    print(f"{'queries x reference':>22} | {'backend':>10} | {'build s':>7} | {'search s':>8} | "
          f"{'queries/s':>10} | recall@{args.k}")  # fmt: skip
    for m in args.reference:
        self_search = m == args.queries
        ref = query if self_search else unit(m, args.dim, 1)
        exclude = np.arange(m) if self_search else None
        sample = np.sort(
            np.random.default_rng(2).choice(len(query), min(2000, len(query)), replace=False)
        )
        truth = build_searcher(ref, "torch", KnnOptions("torch", args.device)).search(
            query[sample], args.k, None if exclude is None else exclude[sample]
        )[1]
        for backend in backends:
            t = time.perf_counter()
            searcher = build_searcher(ref, backend, KnnOptions(backend, args.device))
            sync(args.device)
            build = time.perf_counter() - t
            searcher.search(query[:1000], args.k, None if exclude is None else exclude[:1000])
            t = time.perf_counter()
            _, idx = searcher.search(query, args.k, exclude)
            sync(args.device)
            took = time.perf_counter() - t
            recall = recall_at_k(idx[sample], truth)
            size = f"{args.queries:,} x {m:,}"
            print(f"{size:>22} | {backend:>10} | {build:>7.2f} | {took:>8.2f} | "
                  f"{args.queries / took:>10,.0f} | {recall:.4f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
