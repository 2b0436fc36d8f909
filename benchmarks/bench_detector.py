"""Detector benchmark: new synthetic pairs scored against a finished LEMoN_FIX run, by the command line and by
the Python API, each in a fresh process (seconds, peak RSS), and A's own test pairs re-scored as new data.

Usage:
    python benchmarks/bench_detector.py                              # A: 20,000 pairs (built), 10,000 new
    python benchmarks/bench_detector.py --run_a /tmp/1m --check_own 10000
    python benchmarks/bench_detector.py --n_a 1000000 --output_root /tmp/bench-detector  # builds the 1M run

Run A is ``python -m run_lemon --dataset synthetic --n_synthetic N_A --lemon_fix`` (built here unless
``--run_a`` names a finished one). The new pairs are ``--dataset synthetic --n_synthetic 0.8 N_NEW
--data_seed 1``: N_NEW pairs in all (train, val and test of another sample of the same geometry), none of
them in A. CLI: ``python -m run_lemon --detector A <those flags> --output_dir B`` (whole command: imports,
rebuilding A's reference set, generating and scoring the new pairs, writing B). API:
``lemon.Detector.load(A).score(image_embeddings=..., text_embeddings=..., labels=...)`` on the same
pairs (load and score timed apart; imports and generating the arrays left out). Own pairs: the first
``--check_own`` pairs of A's test split scored through the API, compared with A's scores.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
from pathlib import Path
start = time.perf_counter()
out = {}
kind, args = sys.argv[1], sys.argv[2:]
if kind == "cli":
    import run_lemon
    out["code"] = run_lemon.main(args)
elif kind == "api":
    import numpy as np
    import lemon
    from lemon.data.synthetic import make_synthetic_embeddings
    run, n_syn = args[0], int(args[1])
    arrays = make_synthetic_embeddings(n_syn, data_seed=1)
    def pick(key):
        return np.concatenate([arrays[f"{s}_{key}"] for s in ("train", "val", "test")])
    img, txt, labels, y = pick("img"), pick("txt"), pick("noisy_label"), pick("is_mislabel")
    del arrays
    t = time.perf_counter()
    detector = lemon.Detector.load(run, device="cpu")
    out["load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    df = detector.score(image_embeddings=img, text_embeddings=txt, labels=labels)
    out["score_s"] = time.perf_counter() - t
    from sklearn.metrics import roc_auc_score
    out.update(n=len(df), flagged=int(df.flagged.sum()), auroc=roc_auc_score(y, df.score))
    out["search"] = detector.last_search["knn_search"]
else:  # own: A's first test pairs as new data, against A's scores.csv
    import numpy as np
    import pandas as pd
    import lemon
    from lemon.run.load import load_embedded, run_config
    run, n = Path(args[0]), int(args[1])
    a = json.loads((run / "args.json").read_text())
    test = load_embedded(run_config(a), "cpu").splits["test"]
    n = min(n, len(test))
    img, txt, labels = (np.asarray(x[:n]) for x in (test.img, test.txt, test.observed))
    detector = lemon.Detector.load(run, device="cpu")
    t = time.perf_counter()
    df = detector.score(image_embeddings=img, text_embeddings=txt, labels=labels)
    out["score_s"] = time.perf_counter() - t
    cols = ["split", "idx", "score", "flagged"]
    parquet = run / "scores.parquet"
    if parquet.is_file():
        theirs = pd.read_parquet(parquet, columns=cols)
    else:
        theirs = pd.read_csv(run / "scores.csv", usecols=cols)
    theirs = theirs[theirs.split == "test"].set_index("idx").loc[test.ids[:n]]
    diff = np.abs(df.score.to_numpy() - theirs.score.to_numpy())
    agree = (df.flagged.to_numpy() == theirs.flagged.to_numpy()).mean()
    out.update(n=n, max_abs_diff=float(diff.max()), over_1e6=int((diff > 1e-6).sum()),
               flag_agreement=float(agree), search=detector.last_search["knn_search"])
out["wall_s"] = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
out["cpu_s"] = usage.ru_utime + usage.ru_stime
out["peak_gb"] = usage.ru_maxrss / 2**20
print("BENCH " + json.dumps(out))
"""


def child(kind: str, args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter (this checkout's lemon); what it printed, with its wall
    seconds and peak RSS (GiB)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("BENCH ")]
    if proc.returncode or not line:
        raise SystemExit(
            f"failed: {kind} {' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(line[-1][6:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n_a", type=int, default=20_000, help="pairs of run A's train split (built)")
    p.add_argument("--run_a", default=None, help="a finished synthetic LEMoN run to use as A")
    p.add_argument("--n_new", type=int, default=10_000, help="new pairs (a multiple of 10)")
    p.add_argument("--check_own", type=int, default=2000, help="A's test pairs re-scored (0: none)")
    p.add_argument(
        "--output_root", default=None, help="where A and B are written (default: a tmp dir)"
    )
    args = p.parse_args(argv)
    root = Path(args.output_root or tempfile.mkdtemp(prefix="bench-detector-"))
    before = os.getloadavg()[0]
    rows = []
    run_a = Path(args.run_a) if args.run_a else root / f"A-{args.n_a}"
    if not args.run_a:
        flags = ["--dataset", "synthetic", "--n_synthetic", str(args.n_a), "--lemon_fix"]
        a = child("cli", [*flags, "--output_dir", str(run_a), "--overwrite"])
        rows.append(("run A (LEMoN_FIX)", a, ""))
    hp = json.loads((run_a / "hparams.json").read_text())
    n_syn = args.n_new * 8 // 10
    new = ["--dataset", "synthetic", "--n_synthetic", str(n_syn), "--data_seed", "1"]
    out_b = root / "B"
    cli = child("cli", ["--detector", str(run_a), *new, "--output_dir", str(out_b), "--overwrite"])
    metrics = json.loads((out_b / "metrics.json").read_text())
    b_hp = json.loads((out_b / "hparams.json").read_text())
    n_ref = b_hp["detector"]["reference_size"]
    stages = ", ".join(
        f"{k.split('/')[1][:-2]} {metrics[k]:.1f}"
        for k in ("time/detector_load_s", "time/load_features_s", "time/score_s", "time/total_s")
        if k in metrics
    )
    rows.append(
        (
            f"CLI: {args.n_new:,} new pairs",
            cli,
            f"{stages}; test AUROC {metrics['test/AUROC']:.4f}; {b_hp['knn_search']}",
        )
    )
    api = child("api", [str(run_a), str(n_syn)])
    rows.append(
        (
            f"API: {api['n']:,} new pairs",
            api,
            f"load {api['load_s']:.1f}, score {api['score_s']:.1f}; AUROC {api['auroc']:.4f}; "
            f"{api['search']}",
        )
    )
    if args.check_own:
        own = child("own", [str(run_a), str(args.check_own)])
        rows.append(
            (
                f"API: {own['n']:,} of A's test pairs",
                own,
                f"score {own['score_s']:.1f}; max |score - A's| {own['max_abs_diff']:.2g} "
                f"({own['over_1e6']} over 1e-6), flags agree {own['flag_agreement']:.4%}; "
                f"{own['search']}",
            )
        )
    print(
        f"\nrun A: {run_a} ({hp['scorer']}, k={hp['knn_k']}, reference {n_ref:,} pairs, threshold "
        f"{hp['thresholds'][hp['flag_rule']]:.6g} = {hp['flag_rule']}, A's search: "
        f"{hp.get('knn_search')})"
    )
    print(f"load average (1 min) before / after: {before:.2f} / {os.getloadavg()[0]:.2f}")
    print("| what | wall s | CPU s | peak RSS GiB | details |\n|---|---:|---:|---:|---|")
    for name, m, details in rows:
        print(f"| {name} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {m['peak_gb']:.2f} | {details} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
