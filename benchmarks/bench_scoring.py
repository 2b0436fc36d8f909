"""Benchmark of the post-embedding stage (kNN + neighbour terms + selection + scoring + evaluation).

Usage:
    python benchmarks/bench_scoring.py                 # N = 2000, 10000, 40000
    python benchmarks/bench_scoring.py --sizes 2000

Inputs are the synthetic CLIP-like embeddings of ``lemon.data.synthetic`` (val/test = N/8), which reproduce
the N2000 reference inputs bit for bit (tests/scorers/test_scoring.py scores them against the original outputs), so the times
compare with the original implementation's, measured on the same kind of 2-core machine (551 s at
N=2,000; 1,117 s at N=10,000). Each size runs in a fresh subprocess so its peak memory is its own.
Also times, in the same process, a naive path of the two hot loops (the original's per-sample Python loop
for s_n/s_m and its 100-point-grid F1 threshold per candidate) to print speed-up ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

ORIGINAL_S = {2000: 551.0, 10000: 1117.0}


def best_of(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` wall-clock timings of ``fn()`` (the first call also pays warm-up)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def naive_ratios(terms, hparams: dict, y: np.ndarray, n_candidates: int = 20) -> dict[str, float]:
    """Time the original-style loops against ours on the same inputs (same process)."""
    from sklearn.metrics import f1_score

    from lemon.method.evaluate import best_f1

    h = hparams

    def naive_score_loop() -> None:  # one sample at a time, as the original's iterrows loop
        for i in range(len(terms.d_mm)):
            w_n = np.exp(h["tau_1_n"] * terms.prox_n[i]) * np.exp(-h["tau_2_n"] * terms.trd_n[i])
            w_m = np.exp(h["tau_1_m"] * terms.prox_m[i]) * np.exp(-h["tau_2_m"] * terms.trd_m[i])
            _ = (
                terms.d_mm[i]
                + h["beta"] * np.dot(w_n, terms.dist_n[i]) / len(w_n)
                + h["gamma"] * np.dot(w_m, terms.dist_m[i]) / len(w_m)
            )

    H = np.array([[h[n] for n in ("beta", "gamma", "tau_1_n", "tau_2_n", "tau_1_m", "tau_2_m")]])
    naive_loop = best_of(naive_score_loop)
    fast_loop = best_of(lambda: terms.scores(H))

    rng = np.random.default_rng(0)
    cands = np.abs(rng.normal(size=(n_candidates, 6))) * [20, 20, 1, 1, 1, 1]
    scores = terms.scores(cands).numpy()
    t = time.perf_counter()
    for s in scores:  # naive: 100-point threshold grid with sklearn's f1_score, per candidate
        max(f1_score(y, s >= thr) for thr in np.linspace(s.min(), s.max(), 100))
    naive_f1 = (time.perf_counter() - t) / n_candidates
    t = time.perf_counter()
    best_f1(terms.scores(cands), y)
    fast_f1 = (time.perf_counter() - t) / n_candidates
    return {
        "score_loop_naive_s": naive_loop,
        "score_loop_ours_s": fast_loop,
        "per_candidate_naive_s": naive_f1,
        "per_candidate_ours_s": fast_f1,
    }


def run_size(n: int) -> dict:
    """All stages for one N, timed separately; returns a row of the table."""
    import torch

    from lemon.data.embeddings import features_from_arrays
    from lemon.data.synthetic import make_synthetic_embeddings
    from lemon.method.evaluate import evaluate_split, select_thresholds
    from lemon.run.config import RunConfig
    from lemon.run.stages import build_scorer
    from lemon.scorers.base import ScoringContext

    k = 30
    arrays = make_synthetic_embeddings(n)
    cfg = RunConfig(output_dir="unused", dataset="synthetic", knn_k=k)
    row: dict = {"N": n, "torch_threads": torch.get_num_threads()}
    t0 = t = time.perf_counter()
    features = features_from_arrays(arrays)
    row["normalise_s"] = time.perf_counter() - t
    ctx, scorer = ScoringContext(features), build_scorer(cfg, k)
    t = time.perf_counter()
    for split in ("train", "val", "test"):
        for space in ("img", "txt"):
            ctx.neighbours(split, space, k)
    row["knn_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for split in ("train", "val", "test"):
        scorer.terms(ctx, split)
    row["terms_s"] = time.perf_counter() - t
    t = time.perf_counter()
    hparams = scorer.fit(ctx)
    row["select_s"] = time.perf_counter() - t
    t = time.perf_counter()
    outputs = {s: scorer.score(ctx, s, hparams) for s in ("train", "val", "test")}
    thresholds = select_thresholds(outputs["val"]["score"], features.splits["val"].is_mislabel)
    metrics = {}
    for s in outputs:
        metrics.update(
            evaluate_split(outputs[s]["score"], features.splits[s].is_mislabel, thresholds, s)
        )
    row["score_eval_s"] = time.perf_counter() - t
    row["total_s"] = time.perf_counter() - t0
    row["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["val_F1"] = hparams["selected_val"]
    row["test_AUROC"] = metrics["test/AUROC"]
    row.update(naive_ratios(scorer.terms(ctx, "val"), hparams, features.splits["val"].is_mislabel))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 40000])
    parser.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        print(json.dumps(run_size(args._child)))
        return 0
    rows = []
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--_child", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cols = [
        "N",
        "knn_s",
        "terms_s",
        "select_s",
        "score_eval_s",
        "total_s",
        "peak_rss_MiB",
        "val_F1",
        "test_AUROC",
    ]
    print("\nPost-embedding stage, seconds (k=30, cosine, val/test = N/8)")
    print(" | ".join(f"{c:>12}" for c in cols + ["original_s", "speed-up"]))
    for r in rows:
        orig = ORIGINAL_S.get(r["N"])
        extra = (
            [f"{orig:>12.0f}", f"{orig / r['total_s']:>11.0f}x"]
            if orig
            else [f"{'-':>12}", f"{'-':>12}"]
        )
        print(
            " | ".join(f"{r[c]:>12.3f}" if isinstance(r[c], float) else f"{r[c]:>12}" for c in cols)
            + " | "
            + " | ".join(extra)
        )
    print("\nSame process, naive path vs ours (val split)")
    print(
        f"{'N':>8} | {'per-sample loop':>16} | {'vectorised':>12} | ratio | "
        f"{'F1 thr naive':>12} | {'exact sort':>12} | ratio"
    )
    for r in rows:
        print(
            f"{r['N']:>8} | {r['score_loop_naive_s']:>15.4f}s | {r['score_loop_ours_s']:>11.5f}s | "
            f"{r['score_loop_naive_s'] / r['score_loop_ours_s']:>5.1f}x | "
            f"{r['per_candidate_naive_s']:>11.5f}s | {r['per_candidate_ours_s']:>11.6f}s | "
            f"{r['per_candidate_naive_s'] / r['per_candidate_ours_s']:>4.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
