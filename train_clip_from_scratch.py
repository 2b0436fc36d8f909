"""Train an open_clip model from scratch (contrastive loss) on a dataset of this project.

Usage:
    python train_clip_from_scratch.py --dataset demo --noise_type random --noise_level 0.4 \\
        --model lemon-demo --epochs 12 --output_dir runs/clip_demo
    python train_clip_from_scratch.py --dataset mscoco --model ViT-B-32 --epochs 30 \\
        --filter_scores runs/coco/scores.csv --keep_top_n 50000 --output_dir runs/clip_coco_filtered
    python -m run_lemon --dataset demo --clip_model runs/clip_demo --output_dir runs/demo_scratch

``--model``: lemon-tiny / lemon-demo (small configs of ours), any open_clip architecture (ViT-B-32, RN50, ...)
or a model-config .json. ``--filter_scores`` + ``--keep_top_n``: train only on the N pairs a previous run
scored cleanest (lowest LEMoN score). Other run_lemon data flags (``--data_dir``, ``--data_path``,
``--custom_cifar_prompt``, ...) pass through. Re-running the same command resumes from ``train_state.pt``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

from lemon.errors import LemonError

HELP = {
    "output_dir": "Checkpoint folder to write (open_clip layout; pass it to run_lemon --clip_model).",
    "dataset": "Dataset registry name (as run_lemon --dataset).",
    "split": "Split to train on.",
    "data_seed": "Seed of the splits and the noise.",
    "noise_type": "Noise injected into the training captions/labels (default: the dataset's first).",
    "noise_level": "Fraction of noisy pairs (0 = train on the data as is).",
    "filter_scores": "A previous run's scores.csv: train on its cleanest pairs (with --keep_top_n).",
    "keep_top_n": "How many lowest-score train pairs of --filter_scores to keep.",
    "model": "lemon-tiny, lemon-demo, an open_clip architecture (e.g. ViT-B-32) or a model-config .json.",
    "epochs": "Passes over the training pairs.",
    "batch_size": "Pairs per contrastive batch.",
    "lr": "Peak AdamW learning rate (linear warm-up, cosine decay).",
    "weight_decay": "AdamW weight decay (not on gains, biases, embeddings, logit scale).",
    "warmup_steps": "Linear warm-up steps.",
    "seed": "Seed of the initial weights and the batch order.",
    "num_workers": "DataLoader workers decoding images.",
    "device": "'auto' (CUDA when present), 'cpu', 'cuda', ...",
    "precision": "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16.",
}


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from TrainConfig's fields (flag name = field name)."""
    from lemon.embed.train import TrainConfig

    parser = argparse.ArgumentParser(
        prog="python train_clip_from_scratch.py",
        description=__doc__.split("\n")[0],
        epilog="Other run_lemon data flags (--data_dir, --data_path, ...) pass through.",
    )
    for f in fields(TrainConfig):
        if f.name not in HELP:
            continue
        required = f.default is MISSING and f.default_factory is MISSING  # type: ignore[misc]
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        parser.add_argument(
            f"--{f.name}",
            type=kind,
            required=required,
            default=None if required else f.default,
            help=HELP[f.name],
        )
    parser.add_argument(
        "--no_resume", action="store_true", help="Start over even if train_state.pt exists."
    )
    return parser


def data_options(extra: Sequence[str]) -> dict[str, Any]:
    """run_lemon data flags among the unparsed arguments (values that differ from run_lemon's defaults)."""
    from lemon.config import RunConfig
    from lemon.config import build_parser as run_parser

    if not extra:
        return {}
    ns = vars(run_parser().parse_args([*extra, "--output_dir", "unused"]))
    defaults = RunConfig()
    return {k: v for k, v in ns.items() if k != "output_dir" and v != getattr(defaults, k)}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, train, print where the checkpoint is; returns the process exit code."""
    from lemon.embed.train import TrainConfig, train_clip

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, extra = build_parser().parse_known_args(argv)
    opts = {k: v for k, v in vars(args).items() if k != "no_resume"}
    try:
        cfg = TrainConfig(**opts, resume=not args.no_resume, data_options=data_options(extra))
        out = train_clip(cfg)
    except LemonError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"checkpoint: {out}\nuse it: python -m run_lemon --dataset {cfg.dataset} --clip_model {out} "
        f"--output_dir runs/{cfg.dataset}_scratch"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
