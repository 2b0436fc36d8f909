"""Embed a dataset in shards, in parallel: one Slurm array task or one local worker (one per GPU) per shard.

Usage:
    python -m lemon.embed --dataset cc3m --real_dataset --noise_level 0 --shards 64 \\
        --command_launcher slurm --gpus 1 --cpus 8 --mem_gb 32 --slurm_partition gpu
    python -m lemon.embed --dataset mscoco --noise_type cat --shards 4 --command_launcher local_parallel
    python -m run_lemon --dataset mscoco --noise_type cat --output_dir runs/coco   # embeds nothing

It takes run_lemon's data and model flags: the same values select the same cache entries, so the run that
follows reads what the shards embedded (run it with the same --device kind and --precision: they are part
of the entries' identity). The jobs go through the sweep launchers (``local``, ``local_parallel``: one worker
per GPU, ``slurm``: a submitit job array, waited for unless --no_wait). Running the command again embeds
only the shards that are not done (a failed, killed or cancelled one again), and once all are done it
assembles the cache entries (``lemon.embed.shards``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lemon.core.cli import command
from lemon.data.base import SOURCE_FLAGS

#: run_lemon flags that say what is embedded, how and where it is cached
RUN_FLAGS = (
    "dataset",
    *SOURCE_FLAGS,
    "noise_type",
    "noise_level",
    "real_dataset",
    "data_seed",
    "clip_model",
    "cache_dir",
    "image_decode",
    "device",
    "precision",
    "batch_size",
    "num_workers",
)


def build_parser():
    """run_lemon's data and model flags, the sharding flags and every launcher's options."""
    from lemon.core.flags import HelpfulParser, add_flags
    from lemon.embed.shards import DTYPES
    from lemon.run.config import GROUPS, RunConfig
    from lemon.sweep.launchers import add_fan_out_flags

    p = HelpfulParser(
        prog="python -m lemon.embed",
        description="Embed a dataset into the shared cache in shards, one job per shard.",
    )
    add_flags(p, RunConfig, {g: GROUPS[g] for g in ("data", "model", "compute")}, only=RUN_FLAGS)
    s = p.add_argument_group("sharding")
    s.add_argument("--shards", type=int, required=True, help="Number of shards (jobs).")
    s.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="Storage of the cache entries (float16 halves the disk and memory maps).",
    )
    s.add_argument("--shard_index", type=int, default=None, help="(set for the jobs) this shard.")
    s.add_argument("--output_dir", default=None, help="(set for the jobs) the shard's job folder.")
    add_fan_out_flags(p)
    return p


def _config(args):
    """The RunConfig of these flags (only entry points build one), checked as run_lemon checks it."""
    from lemon.run.config import RunConfig, check_names

    values = {name: getattr(args, name) for name in RUN_FLAGS}
    cfg = RunConfig(**values, output_dir="(not used: embedding only)").validate()
    check_names(cfg)
    return cfg


def _job_args(args, device: str, precision: str) -> dict[str, Any]:
    """The flags of a shard job: the given data/model flags, with device and precision pinned."""
    from lemon.run.config import RunConfig

    defaults = RunConfig()
    flags = {n: getattr(args, n) for n in RUN_FLAGS if getattr(args, n) != getattr(defaults, n)}
    flags.update(device=device, precision=precision, shards=args.shards, dtype=args.dtype)
    return flags


@command(lemon=logging.INFO)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.shard_index is not None:
        return _embed_one(args)
    return _coordinate(args)


def _inputs(args, device: str, precision: str):
    """(splits, embedder, cache, plan folder, embedding options) for these flags on ``device``."""
    from lemon.embed.shards import plan_folder
    from lemon.run.load import embed_options, embedding_inputs, load_dataset

    cfg = _config(args).replace(device=device, precision=precision)
    dataset, noise = load_dataset(cfg)
    if dataset.precomputed:
        from lemon.core.errors import LemonError

        raise LemonError(f"Dataset '{cfg.dataset}' brings its own embeddings; nothing to embed.")
    splits, embedder, cache = embedding_inputs(cfg, dataset, noise, device)
    from lemon.embed.folds import FoldModel

    if isinstance(embedder, FoldModel):
        from lemon.core.errors import LemonError

        raise LemonError(
            f"--clip_model {cfg.clip_model} holds {len(embedder.embedders)} fold models: run_lemon "
            "embeds out of fold itself; shard with a single model."
        )
    options = embed_options(cfg, dataset.options.prompt)
    folder = plan_folder(cache, embedder, splits, args.shards, args.dtype, options)
    return splits, embedder, cache, folder, options


def _embed_one(args) -> int:
    """A shard job: embed its rows into the plan's pieces, then mark its job folder done."""
    from lemon.core.errors import LemonError
    from lemon.core.io import mark_done
    from lemon.embed.shards import embed_shard, job_folder

    start = time.time()
    splits, embedder, _, folder, options = _inputs(args, args.device, args.precision)
    mine = job_folder(folder, args.shard_index)
    if args.output_dir is None or Path(args.output_dir).resolve() != mine.resolve():
        raise LemonError(
            f"Shard {args.shard_index} was planned in {args.output_dir}, but these flags and data "
            f"plan it in {mine} (the data or flags changed); run python -m lemon.embed again."
        )
    rows = embed_shard(splits, embedder, folder, args.shard_index, args.shards, options)
    print(f"shard {args.shard_index} of {args.shards}: embedded {rows}")
    mark_done(mine, time.time() - start)
    return 0


def _coordinate(args) -> int:
    """Plan the shards, launch those not done, assemble the cache entries once all are."""
    from lemon import sweep as sw
    from lemon.core.device import resolve_device
    from lemon.embed.base import resolve_precision
    from lemon.embed.shards import assemble, job_folder
    from lemon.sweep.launchers import launch_missing

    if (
        args.command_launcher == "slurm"
    ):  # the jobs run elsewhere: their device is what they ask for
        device = "cuda" if args.gpus else "cpu"
    else:
        device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    splits, embedder, cache, folder, options = _inputs(args, device, precision)
    sizes = ", ".join(f"{s} {len(p):,}" for s, p in splits.splits.items())
    print(
        f"{splits.name} ({sizes}) with {embedder.name} ({precision} on {device}) in {args.shards} shards: {folder}"
    )
    flags = _job_args(args, device, precision)
    jobs = [
        sw.Job(
            f"embed-{splits.name}",
            "lemon.embed.__main__",
            {**flags, "shard_index": i},
            {},
            job_folder(folder, i),
        )
        for i in range(args.shards)
    ]
    state = launch_missing(jobs, vars(args), folder, "shard")
    if state != "done":
        return 1 if state == "failed" else 0
    n = assemble(splits, embedder, cache, folder, args.shards, args.dtype, options)
    print(
        f"All {args.shards} shards done; {n} cache entries assembled under {cache.root}. "
        "python -m run_lemon with the same data and model flags reads them."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
