"""How often the suggested fix is right: the clean class of true label errors, the original caption of
swapped captions.

Usage (from the repository root; the real-noise files are ../shared/data/real-noise/, see its README):
    python benchmarks/bench_suggest.py --real_noise ../shared/data/real-noise
    python benchmarks/bench_suggest.py --real_noise ../shared/data/real-noise --only swin --markdown
    python benchmarks/bench_suggest.py --demo
    python benchmarks/bench_suggest.py --speed 50000

Classification: every ``cifar10n-aggre-*`` and ``cifar10-synthetic-*`` file is scored by run_lemon
(``--dataset embeddings --lemon_fix``: k = 30, no label read to score or suggest); on the pairs whose
observed label is wrong (``{split}_label`` is the clean class) it reports the share whose
``suggested_label`` is the clean class, on the test split and on all splits, next to two anchors on the
same pairs: the argmax of the file's out-of-sample class probabilities (``{split}_pred_probs``) and a
30-neighbour vote of the observed labels (image neighbours in the train split, unweighted); and the
argmax of the probabilities over the classes other than the observed one (what the fix gains by never
proposing the label it replaces).

Captioning: ``--dataset demo`` (40% random swaps, its tiny CLIP): the share of swapped captions whose
``suggested_text`` is the original caption, and the share that describes the same shape, colour, size
and side (the demo's captions use four templates for the same description).
``--speed N``: seconds of LEMoN's score of the test split (N/8 pairs) against N reference pairs with and
without the suggestions (neighbours searched beforehand: the score's own searches are not timed; one of
them is, for scale), for class labels and for captions (every pair with its own caption; the suggestions'
image-to-text search is timed).
Results are also written to ``<output_root>/bench_suggest.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PATTERNS = ("cifar10n-aggre-*.npz", "cifar10-synthetic-*.npz")
VOTE_K = 30


def _run(overrides: dict[str, Any], out: Path) -> pd.DataFrame:
    from lemon.run.config import RunConfig
    from lemon.run.pipeline import run

    result = run(RunConfig(output_dir=str(out), overwrite=True, **overrides))
    return pd.read_csv(result.out_dir / "scores.csv")


def _anchors(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per split: the probabilities' argmax, their argmax without the observed class, and the
    30-neighbour vote of observed labels (image neighbours among the train rows, own row excluded)."""
    from lemon.data.embeddings import features_from_arrays
    from lemon.scorers.base import ScoringContext

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    ctx = ScoringContext(features_from_arrays(arrays, source=str(path)))
    ref_labels = np.asarray(ctx.reference.observed, dtype=np.int64)
    out = {}
    for split in ("train", "val", "test"):
        probs = arrays[f"{split}_pred_probs"].astype(np.float64)
        observed = arrays[f"{split}_noisy_label"]
        others = probs.copy()
        others[np.arange(len(probs)), observed] = -1
        idx = ctx.neighbours(split, "img", VOTE_K)[1]
        votes = np.zeros_like(probs)
        np.add.at(votes, (np.repeat(np.arange(len(idx)), VOTE_K), ref_labels[idx].ravel()), 1.0)
        out[split] = {
            "argmax": probs.argmax(1),
            "argmax_other": others.argmax(1),
            "vote": votes.argmax(1),
        }
    return out


def classification(real_noise: Path, only: str | None, root: Path) -> list[dict[str, Any]]:
    rows = []
    files = sorted(p for pattern in PATTERNS for p in real_noise.glob(pattern))
    for path in files:
        if only and only not in path.name:
            continue
        scores = _run(
            {"dataset": "embeddings", "embeddings": str(path), "lemon_fix": True}, root / path.stem
        )
        anchors = _anchors(path)
        row: dict[str, Any] = {"file": path.stem}
        for where, splits in (("test", ["test"]), ("all", ["train", "val", "test"])):
            part = scores[scores["split"].isin(splits)]
            errors = part["is_mislabel"] == 1
            clean = part["clean_label"].to_numpy()[errors]
            row[f"{where}/errors"] = int(errors.sum())
            row[f"{where}/suggestion"] = float(
                np.mean(part["suggested_label"].to_numpy()[errors].astype(np.int64) == clean)
            )
            for name in ("argmax", "argmax_other", "vote"):
                pred = np.concatenate([anchors[s][name] for s in splits])
                idx = part["idx"].to_numpy()  # rows of each split in order: idx is the row
                offsets = np.cumsum([0] + [len(anchors[s][name]) for s in splits[:-1]])
                split_pos = part["split"].map(dict(zip(splits, offsets))).to_numpy()
                row[f"{where}/{name}"] = float(np.mean(pred[split_pos + idx][errors] == clean))
        rows.append(row)
        logging.getLogger("bench").warning("%s", row)
    return rows


DEMO_WORDS = None


def _description(caption: str) -> frozenset[str]:
    """The demo attributes a caption names (shape, colour, size, side), whatever its template."""
    global DEMO_WORDS
    if DEMO_WORDS is None:
        from lemon.data import demo

        DEMO_WORDS = {*demo.SHAPES, *demo.COLOURS, *demo.SIZES, *demo.SIDES}
    return frozenset(w for w in re.findall(r"[a-z]+", caption) if w in DEMO_WORDS)


def captioning(root: Path) -> dict[str, Any]:
    scores = _run({"dataset": "demo"}, root / "demo")
    out: dict[str, Any] = {"file": "demo (random 0.4)"}
    for where, splits in (("test", ["test"]), ("all", ["train", "val", "test"])):
        part = scores[scores["split"].isin(splits) & (scores["is_mislabel"] == 1)]
        suggested, clean = part["suggested_text"].astype(str), part["clean_label"].astype(str)
        out[f"{where}/errors"] = len(part)
        out[f"{where}/suggestion"] = float(np.mean(suggested.to_numpy() == clean.to_numpy()))
        same = [_description(a) == _description(b) for a, b in zip(suggested, clean)]
        out[f"{where}/same_description"] = float(np.mean(same))
        out[f"{where}/observed_same_description"] = float(
            np.mean(
                [_description(a) == _description(b) for a, b in zip(part["observed_label"], clean)]
            )
        )
    logging.getLogger("bench").warning("%s", out)
    return out


def speed(n: int) -> dict[str, Any]:
    """Seconds of LEMoN's score of the test split with and without its suggestions, for class labels and
    for captions (the synthetic embeddings with every pair's own caption), at ``n`` reference pairs."""
    import time

    from lemon.data import DATASETS
    from lemon.data.base import DataOptions
    from lemon.data.features import Features, SplitFeatures
    from lemon.method.hparams import LEMON_FIX_HPARAMS
    from lemon.scorers import lemon as lemon_scorer
    from lemon.scorers.base import ScoringContext

    labelled = DATASETS.get("synthetic")(DataOptions(n_synthetic=n)).load_features()
    captioned = Features(
        "captioning",
        {
            s: SplitFeatures(
                s,
                f.img,
                f.txt,
                texts := np.asarray([f"{s} caption {i}" for i in range(len(f))], dtype=object),
                texts,
                texts,
                np.zeros(len(f), dtype=bool),
            )
            for s, f in labelled.splits.items()
        },
    )
    out: dict[str, Any] = {"reference": n}
    for task, features in (("classification", labelled), ("captioning", captioned)):
        out[f"{task}/rows"] = len(features.splits["test"])
        for with_fix in (False, True):
            saved = lemon_scorer.suggest
            if not with_fix:
                lemon_scorer.suggest = lambda *a, **k: {}
            try:
                ctx = ScoringContext(features)
                scorer = lemon_scorer.LemonScorer(lemon_scorer.LemonOptions(k=30, select=False))
                start = time.perf_counter()
                ctx.neighbours("test", "img", 30)  # the score's own searches: done beforehand
                out[f"{task}/one_search_s"] = time.perf_counter() - start
                ctx.neighbours("test", "txt", 30)
                start = time.perf_counter()
                scorer.score(ctx, "test", dict(LEMON_FIX_HPARAMS))
                out[f"{task}/{'with' if with_fix else 'without'}_s"] = time.perf_counter() - start
            finally:
                lemon_scorer.suggest = saved
    return out


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| file | test errors | fix = clean (test) | probs argmax | argmax other than observed | "
        "30-NN vote | errors (all splits) | fix = clean (all) |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['test/errors']} | {r['test/suggestion']:.3f} | {r['test/argmax']:.3f} | "
            f"{r['test/argmax_other']:.3f} | {r['test/vote']:.3f} | {r['all/errors']} | "
            f"{r['all/suggestion']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--real_noise", type=Path, help="Folder of the real-noise .npz files.")
    p.add_argument("--only", help="Only files whose name contains this.")
    p.add_argument("--demo", action="store_true", help="Measure suggested captions on the demo.")
    p.add_argument(
        "--speed", type=int, default=0, help="Time the suggestions at this many reference pairs."
    )
    p.add_argument("--output_root", type=Path, default=None, help="Where the runs go (a temp dir).")
    p.add_argument("--markdown", action="store_true", help="Print the docs' table.")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = args.output_root or Path(tempfile.mkdtemp(prefix="bench_suggest_"))
    results: dict[str, Any] = {}
    if args.real_noise:
        results["classification"] = classification(args.real_noise, args.only, root)
        print(
            _markdown(results["classification"])
            if args.markdown
            else json.dumps(results["classification"], indent=1)
        )
    if args.demo:
        results["captioning"] = captioning(root)
        print(json.dumps(results["captioning"], indent=1))
    if args.speed:
        results["speed"] = speed(args.speed)
        print(json.dumps(results["speed"], indent=1))
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench_suggest.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
