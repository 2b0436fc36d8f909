"""Run LEMoN (or a baseline) once and evaluate it.

Usage:
    python -m run_lemon --dataset demo --output_dir runs/demo
    python -m run_lemon --dataset csv --data_path pairs.csv --real_dataset --output_dir runs/mine
    python -m run_lemon --dataset embeddings --embeddings my.npz --output_dir runs/mine --lemon_fix
    python -m run_lemon --dataset mscoco --noise_type cat --noise_level 0.4 --output_dir runs/coco
    python -m run_lemon --detector runs/mine --dataset csv --data_path new.csv --output_dir runs/new

Flags keep the original LEMoN run_lemon's names; ``--help`` lists them, grouped. Writes args.json,
log.txt, scores.csv, hparams.json, metrics.json and, last, ``done`` into --output_dir, then prints a
summary. The flags are parsed before the pipeline (and torch) is imported, so ``--help`` answers at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from lemon.core.cli import command
from lemon.run.config import build_parser, check_names, config_from_args

__all__ = ["build_parser", "check", "main"]


def check(argv: Sequence[str]) -> None:
    """Raise LemonError when ``argv`` would fail at start (flags, values, names); runs nothing."""
    check_names(config_from_args(argv, raise_errors=True))


@command()
def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the pipeline, print the summary; returns the process exit code."""
    cfg = config_from_args(argv)
    console = logging.DEBUG if cfg.debug else logging.WARNING  # the full log is in log.txt
    for handler in logging.getLogger().handlers:
        handler.setLevel(console)
    if cfg.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    from lemon.core.startup import check_torch

    check_torch()  # a torchvision built for another torch fails here, in one line, before any work
    if cfg.detector:  # score against a finished run (docs/detector.md)
        from lemon.review.detector_run import format_detector_summary, run_detector

        print(format_detector_summary(run_detector(cfg)))
        return 0
    from lemon.run.pipeline import run  # after parsing: torch loads only for a run
    from lemon.run.summary import format_summary

    result = run(cfg)
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
