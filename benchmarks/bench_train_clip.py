"""CLIPs trained from scratch on the data they score: out-of-fold scoring, and masking identical captions.

Usage:
    python benchmarks/bench_train_clip.py --part folds [--seeds 0 1] [--folds 5]
    python benchmarks/bench_train_clip.py --part mask [--seeds 0 1]
    python benchmarks/bench_train_clip.py                   # both tables (markdown, as in docs/training.md)

Every model is trained with ``demo_clip``'s recipe (``lemon-demo``, 12 epochs, batch 100, lr 2e-3, on the
noisy train split) and scored by ``lemon.run.pipeline.run`` (LEMoN selected on val, k=30), once per training
seed.

- ``folds``: the demo (captioning, 40% random noise). One model trained on the whole train split scores
  its own training pairs (train split) against unseen ones (val, test); ``--folds K`` trains K models, each
  without one K-th of the train images, and scores every pair with the model that never saw it. The table
  gives AUROC per split for both, for LEMoN and for CLIP similarity.
- ``mask``: the demo's images written as PNG files with a class-label table (``--dataset csv``, the real
  user path), labels = shape (6 classes: about 16 identical prompts per image in a batch of 100), 40%
  symmetric label noise; plus the demo's captions (714 distinct among 2,000 train pairs: about 0.2
  same-caption partners per image in a batch). Each is trained with and without
  ``--mask_identical_captions``; the table gives test AUROC.

Everything is written under ``--output_root`` (default: a temporary folder), caches included; each run's
result is printed to stderr as it comes, the tables to stdout at the end, and everything to
``<output_root>/bench_train_clip.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as a script

SPLITS = ("train", "val", "test")
LABELS = ("shape",)  # class labels of the csv variant; "colour shape" (48 classes) works too


def recipe() -> dict[str, Any]:
    """demo_clip's training options (data: the demo, 40% random noise, data_seed 0)."""
    from lemon.embed.checkpoint import NAMED_CHECKPOINTS

    return dict(next(e for e in NAMED_CHECKPOINTS if e.name == "demo_clip").train)


EPOCHS: int | None = None  # --epochs: a shorter recipe, to check the script quickly


def train(out: Path, **options: Any) -> Path:
    from lemon.train import TrainConfig, train_clip

    flags = {**recipe(), "num_workers": 0, **options}
    if EPOCHS is not None:
        flags["epochs"] = EPOCHS
    return train_clip(TrainConfig.from_flags(flags, output_dir=str(out), device="cpu"))


def score(out: Path, model: Path, cache: Path, scorer: str = "lemon", **data: Any) -> dict:
    """metrics.json of one run (LEMoN_OPT, or a baseline) with ``model`` on ``data``."""
    from lemon.run.config import RunConfig
    from lemon.run.pipeline import run

    cfg = RunConfig(
        output_dir=str(out),
        clip_model=str(model),
        cache_dir=str(cache),
        scorer=scorer,
        knn_k=30,
        device="cpu",
        num_workers=0,
        overwrite=True,
        **data,
    )
    return run(cfg).metrics


def write_demo_table(folder: Path, labels: str) -> Path:
    """The demo's 3,300 images as PNG files and a table (image, label) with labels 'shape' or
    'colour shape'; the demo's own splits in a 'split' column."""
    import pandas as pd
    from PIL import Image

    from lemon.data.demo import COLOURS, SHAPES, SPLIT_SIZES, render_split

    rows = []
    for split, n in SPLIT_SIZES.items():
        pixels, attrs = render_split(split, n)
        shape = np.asarray(SHAPES)[attrs["shape"]]
        colour = np.asarray(list(COLOURS))[attrs["colour"]]
        for i in range(n):
            path = folder / "images" / split / f"{i:05d}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels[i]).save(path)
            label = shape[i] if labels == "shape" else f"{colour[i]} {shape[i]}"
            rows.append({"image": f"images/{split}/{i:05d}.png", "label": label, "split": split})
    table = folder / f"demo_{labels.replace(' ', '_')}.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table


def part_folds(root: Path, seeds: list[int], k: int) -> list[dict]:
    results = []
    data = {"dataset": "demo", "noise_type": "random", "noise_level": 0.4, "data_seed": 0}
    for seed in seeds:
        for folds in (1, k):
            t = time.time()
            model = train(root / f"folds{folds}_seed{seed}", seed=seed, folds=folds)
            train_s = time.time() - t
            for scorer in ("lemon", "clip_sim"):
                m = score(root / f"run_folds{folds}_seed{seed}_{scorer}", model, root / "cache",
                          scorer, **data)  # fmt: skip
                results.append(
                    {
                        "seed": seed,
                        "folds": folds,
                        "scorer": scorer,
                        "train_s": round(train_s, 1),
                        **{s: m[f"{s}/AUROC"] for s in SPLITS},
                    }
                )
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def part_mask(root: Path, seeds: list[int]) -> list[dict]:
    results = []
    datasets = [
        (
            f"demo images, {labels} labels (csv)",
            {"dataset": "csv", "data_path": str(write_demo_table(root, labels))},
            {"label_column": "label", "text_column": "", "noise_type": "symmetric"},
        )
        for labels in LABELS
    ]
    datasets.append(("demo captions", {"dataset": "demo"}, {"noise_type": "random"}))
    for name, source, extra in datasets:
        data = {**source, **extra, "noise_level": 0.4, "data_seed": 0}
        for seed in seeds:
            for mask in (False, True):
                tag = f"{name.split(',')[0].replace(' ', '_')}_{len(results)}_mask{int(mask)}"
                t = time.time()
                model = train(root / tag, seed=seed, mask_identical_captions=mask, **data)
                train_s = time.time() - t
                for scorer in ("lemon", "clip_sim"):
                    m = score(root / f"run_{tag}_{scorer}", model, root / "cache", scorer, **data)
                    results.append(
                        {
                            "data": name,
                            "seed": seed,
                            "mask": mask,
                            "scorer": scorer,
                            "train_s": round(train_s, 1),
                            "test": m["test/AUROC"],
                        }
                    )
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def folds_table(results: list[dict], k: int) -> str:
    lines = [
        "| model | scorer | train AUROC | val AUROC | test AUROC | train − test |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for folds in (1, k):
        for scorer in ("lemon", "clip_sim"):
            rows = [r for r in results if r["folds"] == folds and r["scorer"] == scorer]
            if not rows:
                continue
            mean = {s: float(np.mean([r[s] for r in rows])) for s in SPLITS}
            label = "one model (trained on train)" if folds == 1 else f"--folds {k} (out of fold)"
            lines.append(
                f"| {label} | {scorer} | {mean['train']:.3f} | {mean['val']:.3f} | "
                f"{mean['test']:.3f} | {mean['train'] - mean['test']:+.3f} |"
            )
    return "\n".join(lines)


def mask_table(results: list[dict]) -> str:
    lines = [
        "| data (40% noise) | scorer | test AUROC, no mask | test AUROC, mask | mask − no mask |",
        "|---|---|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["data"] for r in results):
        for scorer in ("lemon", "clip_sim"):
            rows = [r for r in results if r["data"] == name and r["scorer"] == scorer]
            off = float(np.mean([r["test"] for r in rows if not r["mask"]]))
            on = float(np.mean([r["test"] for r in rows if r["mask"]]))
            lines.append(f"| {name} | {scorer} | {off:.3f} | {on:.3f} | {on - off:+.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("folds", "mask", "all"), default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--output_root", default=None)
    parser.add_argument("--epochs", type=int, default=None, help="Override the recipe's 12.")
    args = parser.parse_args(argv)
    global EPOCHS
    EPOCHS = args.epochs
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the runs log INFO into their log.txt only
        handler.setLevel(logging.WARNING)
    root = Path(args.output_root or tempfile.mkdtemp(prefix="bench_train_clip_"))
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"seeds": args.seeds}
    if args.part in ("folds", "all"):
        out["folds"] = part_folds(root, args.seeds, args.folds)
    if args.part in ("mask", "all"):
        out["mask"] = part_mask(root, args.seeds)
    (root / "bench_train_clip.json").write_text(json.dumps(out, indent=1))
    seeds = ", ".join(map(str, args.seeds))
    if "folds" in out:
        print(f"\nOut-of-fold scoring on the demo (mean over training seeds {seeds}):\n")
        print(folds_table(out["folds"], args.folds))
    if "mask" in out:
        print(f"\nMasking identical captions (mean over training seeds {seeds}):\n")
        print(mask_table(out["mask"]))
    print(f"\nresults: {root / 'bench_train_clip.json'}")


if __name__ == "__main__":
    main()
