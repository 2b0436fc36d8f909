"""Train an open_clip model from scratch (contrastive loss) on a dataset of this project.

Usage:
    python train_clip_from_scratch.py --dataset demo --noise_type random --noise_level 0.4 \\
        --model lemon-demo --epochs 12 --output_dir runs/clip_demo
    python train_clip_from_scratch.py --dataset csv --data_path pairs.csv --model lemon-demo \\
        --epochs 20 --folds 5 --output_dir runs/clip_mine
    python train_clip_from_scratch.py --dataset mscoco --model ViT-B-32 --epochs 30 \\
        --filter_scores runs/coco/scores.csv --keep_top_n 50000 --output_dir runs/clip_coco_filtered
    python -m run_lemon --dataset demo --clip_model runs/clip_demo --output_dir runs/demo_scratch

``--model``: lemon-tiny / lemon-demo (small configs that train on a CPU), any open_clip architecture
(ViT-B-32, RN50, ...) or a model-config .json. ``--filter_scores`` + ``--keep_top_n``: train only on the N
pairs a previous run scored cleanest (lowest LEMoN score). ``--folds K``: K models, each without one K-th
of the images, so that run_lemon scores every pair with a model that never saw it. run_lemon's data-source
flags (``--data_dir``, ``--data_path``, the table's columns, ``--class_names``, ``--custom_cifar_prompt``)
work here too. Re-running the same command resumes from ``train_state.pt``. It ends by printing the
run_lemon command that scores the same data with the new model.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lemon.core.cli import command


def build_parser(raise_errors: bool = False):
    """Training flags (TrainConfig) plus run_lemon's data-source flags, from one generator."""
    from lemon.core.flags import HelpfulParser, add_flags
    from lemon.data.base import SOURCE_FLAGS
    from lemon.run.config import RunConfig
    from lemon.train.config import GROUPS, TrainConfig

    parser = HelpfulParser(
        prog="python train_clip_from_scratch.py",
        description=__doc__.split("\n")[0],
        raise_errors=raise_errors,
    )
    add_flags(parser, TrainConfig, GROUPS)
    add_flags(parser, RunConfig, {"data": "data source (as run_lemon)"}, only=SOURCE_FLAGS)
    parser.add_argument(
        "--no_resume", action="store_true", help="Start over even if train_state.pt exists."
    )
    return parser


def check(argv: Sequence[str]) -> None:
    """Raise LemonError when ``argv`` would fail at start (flags, values, dataset name); runs nothing."""
    from lemon.data import DATASETS
    from lemon.train import TrainConfig

    args = vars(build_parser(raise_errors=True).parse_args(argv))
    args.pop("no_resume")
    TrainConfig.from_flags(args).validate()
    DATASETS.get(args["dataset"])


def use_command(args: dict, out: str) -> str:
    """The run_lemon command that scores the data the model was trained on, with it (pasteable from the
    folder the training ran in): the same data-source flags and data seed, the same injected noise, or
    ``--real_dataset`` when it trained on data as it is without a clean column."""
    from lemon.data.base import SOURCE_FLAGS

    parser = build_parser()
    flags = ["--dataset", args["dataset"]]
    for name in (*SOURCE_FLAGS, "data_seed", "noise_type"):
        value = args.get(name)
        if value is not None and value != parser.get_default(name):
            flags += [f"--{name}", str(value)]
    if args.get("noise_level"):
        flags += ["--noise_level", str(args["noise_level"])]
    elif not args.get("clean_column"):
        flags += ["--real_dataset"]
    folder = Path(out)
    flags += [
        "--clip_model",
        str(folder),
        "--output_dir",
        str(folder.with_name(folder.name + "_lemon")),
    ]
    return shlex.join(["python", "-m", "run_lemon", *flags])


@command(logging.INFO)
def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, train, print where the checkpoint is; returns the process exit code."""
    from lemon.train import TrainConfig, train_clip

    args = vars(build_parser().parse_args(argv))
    resume = not args.pop("no_resume")
    cfg = TrainConfig.from_flags(args, resume=resume)
    out = train_clip(cfg)
    print(f"checkpoint: {out}\nuse it: {use_command(args, str(out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
