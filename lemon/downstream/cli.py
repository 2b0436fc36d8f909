"""Train and evaluate a downstream model on data filtered by a finished run's scores.

Usage:
    python -m lemon.downstream --scores runs/demo --filter drop_top --fraction 0.4 --output_dir runs/ds
    python -m lemon.downstream --scores runs/synthetic --filter flagged --output_dir runs/ds_flagged
    python -m lemon.downstream --scores runs/demo --filter none --output_dir runs/ds_unfiltered

Classification runs train a logistic-regression head on the run's image embeddings (test accuracy on the
clean labels); captioning runs train a CLIP from scratch on the kept pairs (test retrieval recall@1/5/10).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lemon.core.cli import command
from lemon.core.flags import HelpfulParser, add_flags
from lemon.downstream.config import GROUPS, DownstreamConfig


def build_parser(raise_errors: bool = False) -> HelpfulParser:
    parser = HelpfulParser(
        prog="python -m lemon.downstream",
        description=(__doc__ or "").split("\n")[0],
        raise_errors=raise_errors,
    )
    add_flags(parser, DownstreamConfig, GROUPS)
    return parser


def check(argv: Sequence[str]) -> None:
    """Raise LemonError when ``argv`` would fail at start (flags and values); runs nothing."""
    DownstreamConfig.from_flags(vars(build_parser(raise_errors=True).parse_args(argv))).validate()


@command(logging.INFO)
def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run, print the metrics; returns the process exit code."""
    from lemon.downstream.run import run_downstream

    cfg = DownstreamConfig.from_flags(vars(build_parser().parse_args(argv)))
    metrics = run_downstream(cfg)
    shown = {k: v for k, v in metrics.items() if k.startswith(("test/", "train/"))}
    print(
        f"{cfg.filter_label}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in shown.items() if v is not None)
    )
    print(f"outputs: {cfg.output_dir}")
    return 0
