"""Learning from reviews: with decisions simulated from the truth, how close ``run_lemon --reviewed`` gets
to the F1 of selecting on a fully labelled val split, and whether the audit's interval covers the rate.

Usage (from the repository root; the real-noise files are ../shared/data/real-noise/, see its README):
    python benchmarks/bench_reviewed.py --demo
    python benchmarks/bench_reviewed.py --embeddings ../shared/data/real-noise/cifar10n-aggre-swin.npz
    python benchmarks/bench_reviewed.py --demo --embeddings A.npz --embeddings B.npz --markdown

Per case, three runs of ``lemon.run.pipeline.run``:
1. label-free (``--lemon_fix``: no label read to score); a person reviews its top ``--flags`` (200)
   pairs by score, all splits pooled, and an audit of ``--audit`` (100) pairs drawn uniformly from every
   scored pair (seeded): the decisions are simulated from the truth (``wrong`` where the pair is
   mislabelled, with the clean label as the correction) and written as decisions.csv;
2. ``--reviewed decisions.csv`` (otherwise the default LEMoN_OPT run: hyper-parameters and threshold are
   chosen on the decisions, not on val's labels);
3. the default LEMoN_OPT run, selected on the labelled val split (the val-optimal F1).
Reported: test F1 of each (label-free threshold, reviewed threshold, val-optimal threshold), the audit's
rate and 95% Clopper-Pearson interval against the true rate over every scored pair, and whether it covers.
``--seeds N`` repeats the simulation with N audit draws (the coverage over draws).
Results are also written to ``<output_root>/bench_reviewed.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _run(
    overrides: dict[str, Any], out: Path
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    from lemon.run.config import RunConfig
    from lemon.run.pipeline import run

    result = run(RunConfig(output_dir=str(out), overwrite=True, **overrides))
    return pd.read_csv(out / "scores.csv"), result.metrics, result.hparams


def simulate_decisions(truth: pd.DataFrame, flags: int, audit: int, seed: int) -> pd.DataFrame:
    """decisions.csv of a reviewer who checks the ``flags`` top-scored pairs and ``audit`` pairs drawn
    uniformly from all, deciding from the truth (a label-free run's scores.csv, with is_mislabel and
    clean_label)."""
    scores = truth
    top = np.argsort(-scores["score"].to_numpy(), kind="stable")[:flags]
    rng = np.random.default_rng([seed, 24])
    drawn = rng.choice(len(scores), audit, replace=False)  # across every scored pair
    top = top[~np.isin(top, drawn)]  # a flag the audit drew too is one decision, audit = 1
    rows = np.concatenate([top, drawn])
    picked = truth.iloc[rows]
    wrong = picked["is_mislabel"].to_numpy() == 1
    return pd.DataFrame(
        {
            "row": picked["row"].to_numpy(),
            "image": picked["image"].to_numpy() if "image" in picked else "",
            "decision": np.where(wrong, "wrong", "right"),
            "corrected": np.where(wrong, picked["clean_label"].astype(str).to_numpy(), ""),
            "audit": np.r_[np.zeros(len(top), dtype=int), np.ones(len(drawn), dtype=int)],
            "reviewed_at": "2025-05-01T12:00:00Z",
            "split": picked["split"].to_numpy(),
        }
    )


def case(
    name: str, data: dict[str, Any], root: Path, flags: int, audit: int, seeds: int
) -> dict[str, Any]:
    folder = root / name.replace(" ", "_")
    # LEMoN_FIX reads no label to score; the truth in its scores.csv only grades and simulates
    truth, blind_metrics, _ = _run({**data, "lemon_fix": True}, folder / "label_free")
    _, opt_metrics, _ = _run(data, folder / "val_optimal")
    true_rate = float(truth["is_mislabel"].mean())
    out: dict[str, Any] = {
        "case": name,
        "pairs": len(truth),
        "true_rate": true_rate,
        "test/F1_label_free": blind_metrics.get("test/F1_label_free"),
        "test/F1_val_optimal": opt_metrics["test/F1_optimal"],
        "runs": [],
    }
    for seed in range(seeds):
        decisions = simulate_decisions(truth, flags, audit, seed)
        path = folder / f"decisions_{seed}.csv"
        decisions.to_csv(path, index=False)
        _, m, h = _run({**data, "reviewed": str(path)}, folder / f"reviewed_{seed}")
        low, high = m["estimated_noise_rate_low"], m["estimated_noise_rate_high"]
        out["runs"].append(
            {
                "seed": seed,
                "test/F1_reviewed": m["test/F1_reviewed"],
                "selection": h["selection"],
                "audit_rate": m["estimated_noise_rate"],
                "low": low,
                "high": high,
                "covers": bool(low <= true_rate <= high),
                "audited": m["audit/n"],
            }
        )
        logging.getLogger("bench").warning("%s %s", name, out["runs"][-1])
    return out


def _markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | pairs | true rate | audit rate [95% CI] | covers | test F1 reviewed | test F1 val-optimal "
        "| test F1 label-free |",
        "|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in results:
        for run in r["runs"]:
            lines.append(
                f"| {r['case']} (seed {run['seed']}) | {r['pairs']} | {r['true_rate']:.3f} | "
                f"{run['audit_rate']:.3f} [{run['low']:.3f}, {run['high']:.3f}] | "
                f"{'yes' if run['covers'] else 'no'} | {run['test/F1_reviewed']:.3f} | "
                f"{r['test/F1_val_optimal']:.3f} | "
                + ("-" if r["test/F1_label_free"] is None else f"{r['test/F1_label_free']:.3f}")
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo", action="store_true", help="The demo (captioning, 40%% random swaps).")
    p.add_argument("--embeddings", type=Path, action="append", default=[], help="An .npz file.")
    p.add_argument("--flags", type=int, default=200, help="Top-scored pairs reviewed (200).")
    p.add_argument("--audit", type=int, default=100, help="Pairs audited at random (100).")
    p.add_argument("--seeds", type=int, default=1, help="Audit draws per case (1).")
    p.add_argument("--knn_k", type=int, default=30, help="k of every run (30).")
    p.add_argument("--output_root", type=Path, default=None, help="Where the runs go (a temp dir).")
    p.add_argument("--markdown", action="store_true", help="Print the docs' table.")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = args.output_root or Path(tempfile.mkdtemp(prefix="bench_reviewed_"))
    cases = [("demo", {"dataset": "demo"})] if args.demo else []
    cases += [(p.stem, {"dataset": "embeddings", "embeddings": str(p)}) for p in args.embeddings]
    results = [
        case(name, {**data, "knn_k": args.knn_k}, root, args.flags, args.audit, args.seeds)
        for name, data in cases
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench_reviewed.json").write_text(json.dumps(results, indent=1))
    print(_markdown(results) if args.markdown else json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
