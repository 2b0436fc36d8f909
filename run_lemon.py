"""Run LEMoN (or a baseline) once and evaluate it.

Usage:
    python -m run_lemon --dataset synthetic --output_dir runs/synthetic
    python -m run_lemon --dataset embeddings --embeddings my.npz --output_dir runs/mine --lemon_fix
    python -m run_lemon --dataset mscoco --noise_type cat --noise_level 0.4 --output_dir runs/coco

Flags keep the original LEMoN run_lemon's names; ``--help`` lists them all. Writes args.json, log.txt,
scores.csv, hparams.json, metrics.json and, last, ``done`` into --output_dir, then prints a summary table.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from lemon.errors import LemonError


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run the pipeline, print the summary; returns the process exit code."""
    from lemon.config import config_from_args
    from lemon.pipeline import format_summary, run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(argv)
        if cfg.debug:
            logging.getLogger().setLevel(logging.DEBUG)
        result = run(cfg)
    except LemonError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
