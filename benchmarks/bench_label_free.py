"""The label-free rule against the truth: estimated vs true noise rate, label-free F1 vs val-optimal F1.

Usage:
    python benchmarks/bench_label_free.py                       # every case, printed as a table
    python benchmarks/bench_label_free.py --markdown            # docs/label-free.md's table
    python benchmarks/bench_label_free.py --only synthetic      # cases whose name contains a word
    python benchmarks/bench_label_free.py --speed               # the rule's cost on 1M scores
    python benchmarks/bench_label_free.py --real-noise --markdown   # the 15 real-noise files (LEMoN_FIX)
    python benchmarks/bench_label_free.py --make-fixtures       # tests/fixtures/real-noise/ from them

Each case is one ``lemon.run.pipeline.run`` (LEMoN_OPT: hyper-parameters selected on val; LEMoN_FIX: the
paper's fixed setting) on data that carries the truth: the demo (captioning; random and category-swap
noise), ``--dataset synthetic`` at noise 0 / 0.1 / 0.2 / 0.4 / 0.6 (classification) and the vendored
references in ``tests/fixtures/reference/`` (N2000 = ``--dataset synthetic --n_synthetic 2000`` at the
reference's k). ``--real-noise`` runs the 15 files of ``../shared/data/real-noise/`` instead (beside the
repository; cleanlab's cross-validated class probabilities on real and realistic label noise, see the README
there) as a user runs them: ``--dataset embeddings --embeddings FILE --lemon_fix``. The label-free rule never
reads a label; the truth is only used to grade it:

- true rate: the mislabelled fraction of the pairs the rule was fitted on (every scored pair, or the
  held-out val + test pairs when the rule chose them: see ``hparams.json`` ``label_free.pool``);
- est. rate: ``metrics.json`` ``estimated_noise_rate``; interval: ``estimated_noise_rate_low`` -
  ``estimated_noise_rate_high``, and whether it covers the true rate;
- F1 label-free / F1 val-optimal: test F1 at the label-free threshold / at the threshold that maximised
  val F1 (``test/F1_label_free``, ``test/F1_optimal``);
- targets: rate within 0.05 of the truth, label-free F1 within 0.05 of the val-optimal F1.
Results are also written to ``<output_root>/bench_label_free.json``. Each run's label-free step (drawing and
scoring the mismatched pairs, fitting the rule) is timed next to the whole run. ``--speed`` times the rule
itself on 1,000,000 scores (and 2,000,000 mismatched ones) and the drawing of mismatched pairs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO / "tests" / "fixtures" / "reference"
REAL_NOISE_DIR = REPO.parent / "shared" / "data" / "real-noise"
FIXTURE_DIR = REPO / "tests" / "fixtures" / "real-noise"
#: the real-noise files vendored as test fixtures, rows kept, and the seed of the subset
FIXTURE_FILES = ("cifar10n-aggre-swin", "cifar10-synthetic-resnet18")
FIXTURE_ROWS = 5_000
FIXTURE_SEED = 0
TARGET = 0.05


def cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(case name, task, RunConfig overrides for LEMoN_OPT); LEMoN_FIX adds ``lemon_fix``."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for noise, level in (("random", 0.4), ("random", 0.1), ("cat", 0.4)):
        name = f"demo {noise} {level}"
        out.append(
            (name, "captioning", {"dataset": "demo", "noise_type": noise, "noise_level": level})
        )
    for level in (0.0, 0.1, 0.2, 0.4, 0.6):  # 0.0: nothing to find, nothing should be invented
        out.append(
            (f"synthetic {level}", "classification", {"dataset": "synthetic", "noise_level": level})
        )
    refs = {
        "N2000": {"dataset": "synthetic", "n_synthetic": 2000, "noise_level": 0.4},
        "small-cos": {"dataset": "embeddings"},
        "small-euc": {"dataset": "embeddings"},
        "small-disc": {"dataset": "embeddings"},
    }
    for name, base in refs.items():
        config = json.loads((REFERENCE_DIR / name / "orig_results.json").read_text())["config"]
        opt = {**base, "knn_k": int(config["knn_k"]), "dist_type": config["dist_type"]}
        if base["dataset"] == "embeddings":
            opt["embeddings"] = str(REFERENCE_DIR / name / "inputs.npz")
        if config["use_discrete_for_text"]:
            opt.update(use_discrete_for_text=True, legacy_discrete_weighting=True)
        out.append((f"{name} (reference)", "classification", opt))
    return out


def real_noise_cases(folder: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(file name, task, RunConfig overrides) for every real-noise file in ``folder`` (LEMoN_FIX runs)."""
    if not folder.is_dir() or not sorted(folder.glob("*.npz")):
        raise SystemExit(
            f"no real-noise files in {folder}: pass the folder of the 15 .npz files "
            "(--real-noise DIR), see ../shared/data/real-noise/README.md"
        )
    return [
        (f.stem, "classification", {"dataset": "embeddings", "embeddings": str(f)})
        for f in sorted(folder.glob("*.npz"))
    ]


def make_fixtures(source: Path, target: Path = FIXTURE_DIR) -> list[Path]:
    """Seeded subsets of :data:`FIXTURE_FILES` (:data:`FIXTURE_ROWS` rows each, every split kept in
    proportion, rows in their original order) written to ``target`` with every array of the source."""
    import numpy as np

    written = []
    target.mkdir(parents=True, exist_ok=True)
    for name in FIXTURE_FILES:
        path = source / f"{name}.npz"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: pass the real-noise folder (--real-noise DIR)")
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        sizes = {s: len(arrays[f"{s}_img"]) for s in ("train", "val", "test")}
        total = sum(sizes.values())
        rng = np.random.default_rng(FIXTURE_SEED)
        out = {k: v for k, v in arrays.items() if not k.startswith(tuple(sizes))}
        for split, n in sizes.items():
            keep = np.sort(rng.choice(n, round(FIXTURE_ROWS * n / total), replace=False))
            out.update({k: v[keep] for k, v in arrays.items() if k.startswith(f"{split}_")})
        file = target / f"{name}-{FIXTURE_ROWS // 1000}k.npz"
        np.savez_compressed(file, **out)
        written.append(file)
    return written


def fix_overrides(opt: dict[str, Any]) -> dict[str, Any]:
    """LEMoN_FIX for a case: the preset's k and cosine distance replace the case's own."""
    return {k: v for k, v in opt.items() if k not in ("knn_k", "dist_type")} | {"lemon_fix": True}


def run_case(overrides: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Grade one run's label-free rule against its truth."""
    import pandas as pd

    from lemon.run.config import RunConfig
    from lemon.run.pipeline import run

    start = time.time()
    result = run(RunConfig(output_dir=str(out_dir), overwrite=True, **overrides))
    m, lf = result.metrics, result.hparams["label_free"]
    frame: pd.DataFrame = result.scores
    pool = frame[frame.split != "train"] if lf["pool"] == "held_out" else frame
    true = float(pd.to_numeric(pool.is_mislabel).mean())
    return {
        "true_rate": true,
        "est_rate": m["estimated_noise_rate"],
        "low": m.get("estimated_noise_rate_low"),
        "high": m.get("estimated_noise_rate_high"),
        "method": lf["method"],
        "F1_label_free": m["test/F1_label_free"],
        "F1_optimal": m["test/F1_optimal"],
        "pool": lf["pool"],
        "separation": lf["separation_auroc"],
        "warned": bool(lf["warnings"]),
        "label_free_s": m["time/label_free_s"],
        "run_s": time.time() - start,
    }


def targets(row: dict[str, Any]) -> str:
    rate_ok = abs(row["est_rate"] - row["true_rate"]) <= TARGET
    f1_ok = row["F1_label_free"] >= row["F1_optimal"] - TARGET
    return {(True, True): "both", (True, False): "rate", (False, True): "F1"}.get(
        (rate_ok, f1_ok), "none"
    )


HEAD = (
    "dataset",
    "task",
    "scores",
    "true rate",
    "est. rate",
    "interval",
    "F1 label-free",
    "F1 val-optimal",
    "sep.",
    "method",
    "pool",
    "targets met",
)


def covers(row: dict[str, Any]) -> bool | None:
    """Whether the interval covers the true rate (None without an interval)."""
    if row.get("low") is None or row.get("high") is None:
        return None
    return row["low"] <= row["true_rate"] <= row["high"]


def cells(row: dict[str, Any]) -> list[str]:
    sep = "-" if row["separation"] is None else f"{row['separation']:.2f}"
    return [
        row["dataset"],
        row["task"],
        row["scores"],
        f"{row['true_rate']:.3f}",
        f"{row['est_rate']:.3f}" + (" (!)" if row["warned"] else ""),
        "-"
        if covers(row) is None
        else f"{row['low']:.3f}-{row['high']:.3f}" + ("" if covers(row) else " (misses)"),
        f"{row['F1_label_free']:.3f}",
        f"{row['F1_optimal']:.3f}",
        sep,
        row.get("method", "-"),
        row["pool"],
        targets(row),
    ]


def format_table(rows: list[dict[str, Any]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    else:
        widths = [31, 15, 7, 10, 13, 22, 14, 15, 6, 16, 9, 12]
        lines = ["".join(f"{h:<{w}}" for h, w in zip(HEAD, widths))]
        lines += ["".join(f"{c:<{w}}" for c, w in zip(cells(r), widths)) for r in rows]
    met = {t: sum(targets(r) == t for r in rows) for t in ("both", "rate", "F1", "none")}
    lines.append("")
    covered = [covers(r) for r in rows if covers(r) is not None]
    lines.append(
        f"{len(rows)} runs: both targets {met['both']}, rate only {met['rate']}, F1 only "
        f"{met['F1']}, neither {met['none']}; the interval covers the true rate in "
        f"{sum(covered)} of {len(covered)}. (!) = the run warned that the rate may be off."
    )
    return "\n".join(lines)


def speed(n: int = 1_000_000) -> str:
    """Seconds (best of 3) of the rule's steps on ``n`` scores: the estimate with 2n mismatched scores,
    and drawing mismatched pairs among n texts (1,000 distinct) with and without the per-run cap."""
    import numpy as np

    from lemon.method.labelfree import MAX_MISMATCHED, estimate_noise_rate, mismatched_pairs

    def best(f):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
        return min(times)

    rng = np.random.default_rng(0)
    noisy = rng.random(n) < 0.3
    scores = np.where(noisy, rng.normal(1.1, 0.1, n), rng.gamma(100, 0.007, n))  # skewed clean
    null = rng.normal(1.1, 0.1, 2 * n)
    texts = rng.integers(0, 1000, n).astype(str).astype(object)
    rows = [
        (
            f"estimate_noise_rate: {n:,} scores + {2 * n:,} mismatched",
            best(lambda: estimate_noise_rate(scores, mismatched_scores=null)),
        ),
        (
            f"mismatched_pairs: {n:,} texts x 2",
            best(lambda: mismatched_pairs(texts, np.random.default_rng(0))),
        ),
        (
            f"mismatched_pairs: {n:,} texts, capped at {MAX_MISMATCHED:,}",
            best(
                lambda: mismatched_pairs(texts, np.random.default_rng(0), max_pairs=MAX_MISMATCHED)
            ),
        ),
    ]
    est = estimate_noise_rate(scores, mismatched_scores=null)
    lines = [f"{label:<60}{sec:8.2f} s" for label, sec in rows]
    lines.append(f"(estimated rate {est.rate:.4f}, true {noisy.mean():.4f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="cases whose name contains a word")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=None,
        choices=["OPT", "FIX"],
        help="OPT and FIX (default), FIX alone with --real-noise",
    )
    parser.add_argument("--output_root", type=Path, default=Path("runs/bench_label_free"))
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--speed", action="store_true", help="only time the rule on 1M scores")
    parser.add_argument(
        "--real-noise",
        nargs="?",
        const=REAL_NOISE_DIR,
        type=Path,
        default=None,
        metavar="DIR",
        help=f"run the real-noise files instead (default folder: {REAL_NOISE_DIR})",
    )
    parser.add_argument(
        "--make-fixtures",
        action="store_true",
        help=f"write the seeded {FIXTURE_ROWS:,}-row subsets of {', '.join(FIXTURE_FILES)} to "
        f"{FIXTURE_DIR.relative_to(REPO)} (from --real-noise DIR, else {REAL_NOISE_DIR})",
    )
    args = parser.parse_args(argv)
    if args.speed:
        print(speed())
        return 0
    if args.make_fixtures:
        for file in make_fixtures(args.real_noise or REAL_NOISE_DIR):
            print(file)
        return 0
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # runs log INFO to their log.txt, not here
        handler.setLevel(logging.ERROR)
    rows = []
    chosen = cases() if args.real_noise is None else real_noise_cases(args.real_noise)
    modes = args.modes or (["OPT", "FIX"] if args.real_noise is None else ["FIX"])
    for name, task, opt in chosen:
        if args.only and not any(word in name for word in args.only):
            continue
        for mode in modes:
            overrides = opt if mode == "OPT" else fix_overrides(opt)
            folder = args.output_root / f"{name.replace(' ', '_')}_{mode}"
            row = {"dataset": name, "task": task, "scores": mode, **run_case(overrides, folder)}
            rows.append(row)
            print(" ".join(cells(row)), f"({row['run_s']:.0f} s)", flush=True)
    args.output_root.mkdir(parents=True, exist_ok=True)
    name = "bench_label_free" + ("_real_noise" if args.real_noise is not None else "")
    (args.output_root / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print()
    print(format_table(rows, args.markdown))
    print()
    print(
        "time of the label-free step (mismatched pairs drawn and scored, rule fitted) vs the run:"
    )
    for r in rows:
        share = r["label_free_s"] / r["run_s"]
        print(
            f"  {r['dataset']:<31} {r['scores']}: {r['label_free_s']:6.2f} s of {r['run_s']:6.1f} s"
            f" ({share:.1%})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
