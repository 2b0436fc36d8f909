"""Check, list and (where possible) download datasets.

Usage:
    python -m lemon.data list [--data_dir D]
    python -m lemon.data check mscoco [--data_dir D]
    python -m lemon.data check csv --data_path pairs.csv [--text_column caption] [--clean_column clean]
    python -m lemon.data download cifar10 [--data_dir D]

``check`` loads the dataset exactly as a run would and prints ``OK`` with the split sizes, or the one-line
error naming the missing path (exit status 1). The layout each dataset expects is in DataSources.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lemon.core.cli import command


def _parser() -> argparse.ArgumentParser:
    from lemon.core.flags import add_flags
    from lemon.data.base import SOURCE_FLAGS
    from lemon.run.config import RunConfig

    parser = argparse.ArgumentParser(
        prog="python -m lemon.data", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser(
        "list", help="Registered datasets, their task and noise types, found or not."
    )
    listing.add_argument("--data_dir", default=None)
    check = sub.add_parser(
        "check", help="Load a dataset as a run would; print split sizes or what is missing."
    )
    check.add_argument("name")
    add_flags(check, RunConfig, {"data": "data (as run_lemon)"}, only=(*SOURCE_FLAGS, "data_seed"))
    download = sub.add_parser(
        "download", help="Download a dataset that is freely downloadable (CIFAR)."
    )
    download.add_argument("name")
    download.add_argument("--data_dir", default=None)
    return parser


def _status(dataset, root) -> str:
    from lemon.core.errors import LemonError
    from lemon.data.custom import ConfigurableDataset

    if dataset.precomputed:
        return "n/a"
    if isinstance(dataset, ConfigurableDataset):
        return "byo"
    try:
        dataset.check_exists(root)
    except LemonError:
        return "missing"
    return "found"


@command()
def main(argv: Sequence[str] | None = None) -> int:
    from lemon.core.errors import LemonError
    from lemon.core.paths import data_root
    from lemon.data.base import DataOptions
    from lemon.data.loading import dropped_total, load_splits
    from lemon.data.registry import DATASETS

    args = _parser().parse_args(argv)
    root = data_root(args.data_dir)
    if args.command == "list":
        print(f"data root: {root}")
        for name in DATASETS.names():
            ds = DATASETS.get(name)()
            noises = ", ".join(ds.noise_types) or "-"
            print(f"{name:<18} {ds.task:<15} {_status(ds, root):<8} noise: {noises}")
        return 0
    try:
        dataset = DATASETS.get(args.name)()
        if args.command == "download":
            if not callable(getattr(dataset, "download", None)):
                raise LemonError(
                    f"Dataset '{dataset.name}' cannot be downloaded automatically; follow "
                    f"DataSources.md#{dataset.name}."
                )
            try:
                paths = dataset.download(root)
            except OSError as err:
                raise LemonError(
                    f"Download of '{dataset.name}' failed ({err}); fetch the files by hand as "
                    f"DataSources.md#{dataset.name} says."
                ) from err
            print("downloaded: " + ", ".join(str(p) for p in paths))
            return 0
        if dataset.precomputed:
            raise LemonError(
                f"Dataset '{dataset.name}' is generated or read from --embeddings; nothing to check."
            )
        splits = load_splits(DATASETS.get(args.name)(DataOptions.from_flags(vars(args))))
    except LemonError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        from lemon.core.errors import interrupt_message

        message, code = interrupt_message(err)
        print(f"error: {message}", file=sys.stderr)
        return code
    sizes = " ".join(f"{s}={len(p)}" for s, p in splits.splits.items())
    dropped = dropped_total(splits)
    counts = {s: c for s, c in splits.dropped_counts().items() if c}
    truth = "" if splits.has_ground_truth else ", no ground truth"
    print(
        f"OK {splits.name} ({splits.task}{truth}): {sizes}"
        + (f" (not scored: {dropped} pairs: {counts})" if dropped else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
