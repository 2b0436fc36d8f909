"""LEMoN against every training-free baseline and against cleanlab's Datalab, on identical embeddings.

Usage:
    python benchmarks/compare_methods.py                          # small-cos, N2000 and (if registered) demo
    python benchmarks/compare_methods.py --sources N2000 --output_root runs/compare
    python benchmarks/compare_methods.py --markdown               # tables as markdown (for docs/baselines.md)

Every method is one ``lemon.run.pipeline.run`` on the same inputs (``--dataset embeddings`` on the shared
reference ``inputs.npz`` files, ``--dataset demo``), so all share the embeddings, the kNN search (k = the
reference's own k, 30 on demo), the thresholds chosen on val and the evaluation; the table gives test
AUROC, AUPRC, F1 at the val-optimal threshold, F1 when flagging the estimated noise rate (the
label-free rule), and the method's own time (fit + scoring, after the shared embeddings are loaded).
The peer is cleanlab's feature-based label-issue finder,
``Datalab(data={'label': labels}, label_name='label').find_issues(features=..., issue_types={'label': {...}})``
on the same unit-norm image embeddings: run once on reference + val and once on reference + test (the
same pool our kNN scorers search), score = 1 - label_score, thresholds chosen on val by the same code;
its label-free F1 is that of its own ``is_label_issue`` flags. Datalab needs ``pip install
'cleanlab[datalab]'``; it is skipped with a note otherwise, and on captioning data (it needs class labels).
Results are also written to ``<output_root>/compare_methods.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as a script

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference"
FIXED = {"beta": 5.0, "gamma": 5.0, "tau_1_n": 0.1, "tau_2_n": 5.0, "tau_1_m": 0.1, "tau_2_m": 5.0}
COLUMNS = ("AUROC", "AUPRC", "F1", "F1_label_free", "time_s")


def methods() -> list[tuple[str, dict[str, Any]]]:
    """(label, RunConfig overrides): LEMoN selected and fixed, then every registered baseline."""
    from lemon.scorers import SCORERS

    out: list[tuple[str, dict[str, Any]]] = [
        ("lemon (selected on val)", {"scorer": "lemon"}),
        ("lemon (fixed β=γ=5, τ1=0.1, τ2=5)", {"scorer": "lemon", **FIXED}),
    ]
    for name in SCORERS.names():
        if name != "lemon":
            out.append((name, {"scorer": name}))
        if name == "clip_logits":
            out.append(("clip_logits (T=0.01)", {"scorer": name, "temperature": 0.01}))
    return out


def sources(names: list[str], reference_dir: Path) -> list[tuple[str, dict[str, Any], str]]:
    """(name, RunConfig overrides, note) per data source; a missing one gets a note instead of overrides."""
    from lemon.data import DATASETS

    out = []
    for name in names:
        if name == "demo":
            if "demo" in DATASETS:
                out.append((name, {"dataset": "demo", "knn_k": 30}, ""))
            else:
                out.append((name, {}, "dataset 'demo' is not registered in this checkout: skipped"))
            continue
        folder = reference_dir / name
        if (
            name == "N2000"
        ):  # its inputs are what the synthetic generator draws for n=2000, bit for bit
            config = json.loads((folder / "orig_results.json").read_text())["config"]
            out.append(
                (name, {"dataset": "synthetic", "n_synthetic": 2000, "knn_k": config["knn_k"]}, "")
            )
            continue
        if not (folder / "inputs.npz").is_file():
            out.append((name, {}, f"{folder / 'inputs.npz'} not found: skipped"))
            continue
        config = json.loads((folder / "orig_results.json").read_text())["config"]
        out.append(
            (
                name,
                {
                    "dataset": "embeddings",
                    "embeddings": str(folder / "inputs.npz"),
                    "knn_k": int(config["knn_k"]),
                    "dist_type": config["dist_type"],
                },
                "",
            )
        )
    return out


def run_method(base: dict[str, Any], overrides: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Test metrics of one pipeline run; ``time_s`` is the method's own cost (fit + scoring)."""
    from lemon.run.config import RunConfig
    from lemon.run.pipeline import run

    cfg = RunConfig(output_dir=str(out_dir), overwrite=True, **{**base, **overrides})
    m = run(cfg).metrics
    return {
        "AUROC": m["test/AUROC"],
        "AUPRC": m["test/AUPRC"],
        "F1": m["test/F1_optimal"],
        "F1_label_free": m["test/F1_label_free"],
        "time_s": m["time/fit_s"] + m["time/score_s"],
    }


def datalab_peer(features, k: int) -> dict[str, Any]:
    """cleanlab Datalab's kNN label issues on reference + val and reference + test image embeddings."""
    from cleanlab import Datalab

    from lemon.method.evaluate import binary_metrics, evaluate_split, select_thresholds

    ref = features.reference
    scores, flags, seconds = {}, {}, 0.0
    for split in ("val", "test"):
        q = features.splits[split]
        pool = np.concatenate([ref.img, q.img])
        labels = np.concatenate([ref.observed, q.observed]).astype(np.int64)
        start = time.time()
        lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
        lab.find_issues(features=pool, issue_types={"label": {"k": k}})
        issues = lab.get_issues("label").iloc[len(ref) :]
        seconds += time.time() - start
        scores[split] = 1.0 - issues["label_score"].to_numpy(dtype=np.float64)
        flags[split] = issues["is_label_issue"].to_numpy(dtype=bool)
    val, test = features.splits["val"], features.splits["test"]
    m = evaluate_split(
        scores["test"], test.is_mislabel, select_thresholds(scores["val"], val.is_mislabel), "test"
    )
    return {
        "AUROC": m["test/AUROC"],
        "AUPRC": m["test/AUPRC"],
        "F1": m["test/F1_optimal"],
        "F1_label_free": binary_metrics(test.is_mislabel, flags["test"])["F1"],
        "time_s": seconds,
    }


def compare(
    source: str, base: dict[str, Any], root: Path
) -> tuple[list[tuple[str, dict]], list[str]]:
    """Rows (method, metrics) for one source, and notes on what was skipped."""
    from lemon.run.config import RunConfig
    from lemon.run.load import load_features, resolve_k
    from lemon.scorers import SCORERS

    cfg = RunConfig(output_dir="unused", **base)
    features = load_features(cfg, resolve_k(cfg), "cpu")  # only its task is read here
    rows, skipped = [], []
    for label, overrides in methods():
        scorer = SCORERS.get(overrides["scorer"])
        if features.task not in scorer.tasks or scorer.needs_images:
            skipped.append(label)  # model-based baselines need images and downloaded checkpoints
            continue
        out_dir = root / source / re.sub(r"[^A-Za-z0-9.]+", "_", label).strip("_")
        rows.append((label, run_method(base, overrides, out_dir)))
    notes = (
        [
            f"{features.task} data: skipped {', '.join(skipped)} (classification only, or a model-based "
            "baseline: it needs images and downloaded checkpoints)"
        ]
        if skipped
        else []
    )
    if features.task != "classification":
        return rows, notes + ["cleanlab Datalab: skipped (it needs class labels)"]
    for k in sorted({10, int(base.get("knn_k") or 5)}):  # Datalab's default k and ours
        try:
            rows.append((f"cleanlab Datalab (k={k})", datalab_peer(features, k)))
        except ImportError as err:
            first = str(err).splitlines()[0][:160]
            return rows, notes + [f"cleanlab Datalab unavailable ({first})"]
    return rows, notes


def format_table(source: str, rows: list[tuple[str, dict]], markdown: bool) -> str:
    def fmt(v: float | None, column: str) -> str:
        return "-" if v is None else f"{v:.2f}" if column == "time_s" else f"{v:.3f}"

    head = ("method", "AUROC", "AUPRC", "F1 (val thr)", "F1 (label-free)", "fit+score s")
    if markdown:
        lines = [f"**{source}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += [
            "| " + " | ".join([label] + [fmt(m[c], c) for c in COLUMNS]) + " |" for label, m in rows
        ]
    else:
        lines = [f"== {source}", f"{head[0]:<36}" + "".join(f"{h:>16}" for h in head[1:])]
        lines += [
            f"{label:<36}" + "".join(f"{fmt(m[c], c):>16}" for c in COLUMNS) for label, m in rows
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="+", default=["small-cos", "N2000", "demo"])
    parser.add_argument("--reference_dir", type=Path, default=REFERENCE_DIR)
    parser.add_argument("--output_root", type=Path, default=Path("runs/compare_methods"))
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # the pipeline logs INFO to each run's log.txt only
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    # imported once up front, so no method's time includes it
    importlib.import_module("cleanlab.rank")

    from lemon.core import io

    results: dict[str, Any] = {}
    for source, base, note in sources(args.sources, args.reference_dir):
        if note:
            print(f"== {source}: {note}\n")
            results[source] = {"note": note}
            continue
        rows, notes = compare(source, base, args.output_root)
        print(format_table(source, rows, args.markdown))
        for n in notes:
            print(f"  note: {n}")
        print()
        results[source] = {"config": base, "rows": dict(rows), "notes": notes}
    args.output_root.mkdir(parents=True, exist_ok=True)
    io.atomic_write_json(args.output_root / "compare_methods.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
