"""Scale benchmark: LEMoN_FIX end to end on N = 1e5, 3e5, 1e6 synthetic pairs, exact vs approximate search.

Usage:
    python benchmarks/bench_scale.py                                  # N = 1e5, 3e5, 1e6
    python benchmarks/bench_scale.py --sizes 100000 --backends torch auto ivf
    python benchmarks/bench_scale.py --sizes 1000000 --backends auto --cache_dir /big/disk

Each run is ``python -m run_lemon --dataset synthetic --n_synthetic N --lemon_fix --knn_backend B`` (val and
test N/8 each, d=512, reference capped at 50,000) in its own subprocess, so its peak RSS is its own. The
synthetic arrays are generated once per N into the cache (timed on its own: "generate") and read
memory-mapped by every run. Per run: the stages from metrics.json (data = reading and checking the
embeddings, kNN = neighbour search, score = neighbour terms + scores + evaluation, other = the rest of the
wall time: process start and imports, writing the outputs), peak RSS, the search's recall@k against exact search (measured by
the run on 1,000 sampled queries; exact float32 search has nothing to measure) and test AUROC, with its
difference to the exact float32 run of the same N when there is one. One table, printed at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHILD = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
start = time.perf_counter()
if sys.argv[1] == "generate":
    from lemon.data.synthetic import synthetic_store
    synthetic_store(sys.argv[2], int(sys.argv[3]))
    code = 0
else:
    import run_lemon
    code = run_lemon.main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print("BENCH " + json.dumps({{"code": code, "wall_s": time.perf_counter() - start, "peak_gb": peak}}))
"""


def child(args: list[str]) -> dict:
    """Run ``args`` in a fresh interpreter; its exit code, wall seconds and peak RSS (GiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(repo=str(REPO)), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("BENCH ")]
    if proc.returncode or not line:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(line[-1][6:])


def run(n: int, backend: str, cache: Path, out: Path) -> dict:
    """One LEMoN_FIX run; the row of the table."""
    folder = out / f"n{n}-{backend}"
    flags = ["--dataset", "synthetic", "--n_synthetic", str(n), "--lemon_fix"]
    flags += ["--knn_backend", backend, "--cache_dir", str(cache), "--output_dir", str(folder)]
    res = child([*flags, "--overwrite"])
    m = json.loads((folder / "metrics.json").read_text())
    h = json.loads((folder / "hparams.json").read_text())
    knn = m.get("time/knn_s", 0.0)
    staged = m["time/load_features_s"] + m["time/fit_s"] + m["time/score_s"]
    return {
        "N": n,
        "backend": backend,
        "search": h.get("knn_backend", "-"),
        "data_s": m["time/load_features_s"],
        "knn_s": knn,
        "score_s": m["time/fit_s"] + m["time/score_s"] - knn,
        "other_s": res["wall_s"] - staged,
        "wall_s": res["wall_s"],
        "peak_gb": res["peak_gb"],
        "recall_img": m.get("search/knn_recall_at_k_img"),
        "recall_txt": m.get("search/knn_recall_at_k_txt"),
        "test_auroc": m["test/AUROC"],
    }


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["torch", "auto", "ivf"],
        help="torch = exact float32; auto = the default; ivf = approximate (faiss).",
    )
    parser.add_argument("--cache_dir", default=None, help="Where the synthetic arrays go.")
    parser.add_argument("--output_root", default=None, help="Run folders (default: a temp dir).")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench_scale_")
    cache = Path(args.cache_dir or Path(tmp) / "cache")
    out = Path(args.output_root or Path(tmp) / "runs")
    rows, generate = [], {}
    from lemon.data.synthetic import IN_MEMORY_MAX

    for n in args.sizes:
        if n > IN_MEMORY_MAX:  # below it the runs draw the arrays in memory themselves
            t = time.perf_counter()
            gen = child(["generate", str(cache), str(n)])
            generate[n] = (time.perf_counter() - t, gen["peak_gb"])
            print(f"N={n:,}: synthetic arrays ready in {generate[n][0]:.1f} s", flush=True)
        for backend in args.backends:
            rows.append(run(n, backend, cache, out))
            r = rows[-1]
            print(f"  {backend}: {r['wall_s']:.1f} s, test AUROC {r['test_auroc']:.4f}", flush=True)
    exact = {r["N"]: r["test_auroc"] for r in rows if r["backend"] == "torch"}
    print("\nLEMoN_FIX end to end (k=30, d=512, val/test = N/8, reference 50,000), seconds")
    head = (
        f"{'N':>9} | {'--knn_backend':>13} | {'search':>10} | {'data':>6} | {'kNN':>7} | "
        f"{'score':>6} | {'other':>6} | {'total':>7} | {'peak RSS':>8} | {'recall img/txt':>14} | "
        f"{'test AUROC':>10} | {'vs exact':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        diff = r["test_auroc"] - exact[r["N"]] if r["N"] in exact else None
        recall = (
            f"{r['recall_img']:.4f}/{r['recall_txt']:.4f}"
            if r["recall_img"] is not None
            else "exact"
        )
        print(
            f"{r['N']:>9,} | {r['backend']:>13} | {r['search']:>10} | {r['data_s']:>6.1f} | "
            f"{r['knn_s']:>7.1f} | {r['score_s']:>6.1f} | {r['other_s']:>6.1f} | {r['wall_s']:>7.1f} | "
            f"{r['peak_gb']:>6.2f} G | {recall:>14} | {r['test_auroc']:>10.4f} | {fmt(diff, '+8.4f'):>8}"
        )
    print(
        "\ngenerate (once per N, into the cache): "
        + ", ".join(f"N={n:,} {s:.1f} s, peak {g:.2f} G" for n, (s, g) in generate.items())
    )
    print(f"run folders: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
