"""Score one run in parts, in parallel: one Slurm array task or one local worker per part.

Usage:
    python -m lemon.scale.parts --dataset cc3m --data_dir /data/cc3m --real_dataset --lemon_fix \\
        --output_dir runs/cc3m --score_parts 80 --command_launcher slurm --cpus 16 --mem_gb 64
    python -m lemon.scale.parts --dataset synthetic --n_synthetic 1000000 --lemon_fix \\
        --output_dir runs/1m --score_parts 4 --command_launcher local_parallel --n_workers 2

It takes every run_lemon flag. It embeds what the cache lacks, selects the hyper-parameters and writes the
plan (``lemon.scale.parts``), launches the parts that are not done through the sweep launchers, and once all are
done finishes the run into --output_dir exactly as ``run_lemon --score_parts P`` would (that command reads
the parts too, and scores any that are missing itself). The jobs search on the device this command resolves
(``--device``) and read the embeddings it read; running it again launches only the parts not done.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from lemon.core.cli import command


def build_parser():
    """run_lemon's flags, the part index of a job and every launcher's options."""
    from lemon.core.flags import HelpfulParser
    from lemon.run.config import add_run_flags
    from lemon.sweep.launchers import add_fan_out_flags

    p = HelpfulParser(
        prog="python -m lemon.scale.parts",
        description="Score a run in parts (--score_parts), one job per part, then finish the run.",
    )
    add_run_flags(p)
    p.add_argument("--part_index", type=int, default=None, help="(set for the jobs) this part.")
    add_fan_out_flags(p)
    return p


def _config(args):
    """The RunConfig of these flags, checked as run_lemon checks it."""
    from lemon.run.config import RunConfig, check_names, flag_names

    cfg = RunConfig.from_flags({name: getattr(args, name) for name in flag_names()}).validate()
    check_names(cfg)
    return cfg


def _job_args(cfg, device: str, precision: str) -> dict[str, Any]:
    """The flags of a part job: the run's flags (not its outputs), device and precision pinned."""
    from lemon.run.config import RunConfig

    defaults = RunConfig().to_dict()
    own = ("output_dir", "overwrite", "report", "exp_name")
    flags = {n: v for n, v in cfg.to_dict().items() if n not in own and v != defaults[n]}
    # the jobs read the plan this command wrote, wherever their environment points the cache
    from lemon.core.paths import cache_root

    flags.update(device=device, precision=precision, cache_dir=str(cache_root(cfg.cache_dir)))
    return flags


@command(lemon=logging.INFO)
def main(argv: Sequence[str] | None = None) -> int:
    from lemon.core.errors import LemonError

    args = build_parser().parse_args(argv)
    cfg = _config(args)
    if cfg.score_parts < 2:
        raise LemonError(
            f"--score_parts {cfg.score_parts}: pass 2 or more parts (one part is a plain "
            "python -m run_lemon)."
        )
    if args.part_index is not None:
        return _score_one(cfg, args.part_index)
    return _coordinate(cfg, args)


def _score_one(cfg, part: int) -> int:
    """A part job: score its rows into the plan (its job folder is the part's folder)."""
    import resource
    from pathlib import Path

    from lemon.core.errors import LemonError
    from lemon.run.stages import score_one_part

    plan = score_one_part(cfg, part)
    if Path(cfg.output_dir).resolve() != plan.part_folder(part).resolve():
        raise LemonError(
            f"Part {part} was launched into {cfg.output_dir}, but these flags and data plan it in "
            f"{plan.part_folder(part)} (the data or flags changed); run python -m lemon.scale.parts again."
        )
    rows = sum(stop - start for start, stop in (plan.rows(s, part) for s in plan.sizes))
    # what a part needs: the figure to size a Slurm job's memory (--mem_gb) by
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"part {part} of {plan.parts}: scored {rows:,} rows; peak memory {peak_gb:.2f} GB")
    return 0


def _coordinate(cfg, args) -> int:
    """The run, with the parts that are not done launched as jobs and waited for."""
    from lemon import sweep as sw
    from lemon.core.device import resolve_device
    from lemon.embed.base import resolve_precision
    from lemon.run.pipeline import run
    from lemon.run.summary import format_summary
    from lemon.scale.parts import PartsPending
    from lemon.sweep.launchers import launch_missing

    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    cfg = cfg.replace(device=device, precision=precision)
    flags = _job_args(cfg, device, precision)
    state = "done"

    def launch(plan) -> bool:
        nonlocal state
        sizes = ", ".join(f"{s} {n:,}" for s, n in plan.sizes.items())
        print(f"{cfg.dataset} ({sizes}) in {plan.parts} parts, searched on {device}: {plan.folder}")
        jobs = [
            sw.Job(
                "score-parts", "lemon.scale.parts.__main__", {**flags, "part_index": i}, {}, folder
            )
            for i, folder in enumerate(map(plan.part_folder, range(plan.parts)))
        ]
        state = launch_missing(jobs, vars(args), plan.folder, "part")
        return state == "done"

    try:
        result = run(cfg, launch_parts=launch)
    except PartsPending as pending:
        print(pending)
        return 1 if state == "failed" else 0
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
