"""How a sweep's jobs run: the LAUNCHERS registry. Every launcher has one signature,
``run(jobs, **options) -> None``, and declares the command-line options it reads and whether it is a dry run.

- ``dummy``: check every job's flags as its script would, print the commands, run nothing.
- ``local``: one job at a time, each in its own process (a crash or kill -9 of a job does not stop the sweep).
- ``local_parallel``: ``--n_workers`` jobs at a time (default: one per visible GPU, else one per CPU core).
- ``debug``: in this process, one after another (breakpoints work; a crash is reported, the sweep goes on).
- ``slurm``: one submitit job array (``--max_slurm_jobs`` at a time) of a Python function that calls
  ``run_lemon.main``; returns once submitted (``--wait`` blocks until the array finishes).

Jobs arrive with empty run folders; each job writes its outputs, ``job_id`` and ``done`` (last) there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lemon.core.errors import LemonError
from lemon.core.registry import Registry
from lemon.sweep.jobs import Job
from lemon.sweep.local import run_in_process, run_local


@dataclass(frozen=True)
class Option:
    """A command-line option of ``sweep.py`` that a launcher reads (``--<name>``)."""

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] | None = None  # None: a switch
    minimum: float | None = None  # the smallest value allowed (None: any)


@dataclass(frozen=True)
class Launcher:
    """A way to run jobs: ``run(jobs, **options)``, the options it reads, whether it only prints."""

    run: Callable[..., None]
    options: tuple[Option, ...] = ()
    dry_run: bool = False

    def __call__(self, jobs: list[Job], **options: Any) -> None:
        self.run(jobs, **options)


LAUNCHERS: Registry = Registry("launcher")


def launcher(name: str, options: tuple[Option, ...] = (), dry_run: bool = False):
    """Decorator registering ``fn`` as the launcher ``name``."""

    def decorator(fn: Callable[..., None]) -> Launcher:
        return LAUNCHERS.register(name)(Launcher(fn, options, dry_run))

    return decorator


def check_options(values: dict[str, Any]) -> None:
    """A launcher option below its minimum (``--n_workers 0``) is a one-line error, never a silent
    fallback."""
    for name in LAUNCHERS.names():
        for o in LAUNCHERS.get(name).options:
            value = values.get(o.name)
            if o.minimum is not None and value is not None and value < o.minimum:
                least = int(o.minimum) if o.type is int else o.minimum
                raise LemonError(f"--{o.name} must be >= {least}, got {value}.")


def option_names() -> set[str]:
    """Every option some launcher declares."""
    return {o.name for name in LAUNCHERS.names() for o in LAUNCHERS.get(name).options}


@launcher("dummy", dry_run=True)
def dummy(jobs: list[Job], **opts: Any) -> None:
    """Check every job's flags exactly as its script would, print the commands; run nothing.

    Raises LemonError naming every invalid job (and why), so a grid with a bad job never reaches a cluster.
    """
    from lemon.sweep.validate import check_job

    problems = [(job, err) for job in jobs if (err := check_job(job))]
    for job in jobs:
        print(job.command())
    if problems:
        lines = "\n".join(
            f"  {job.run_dir.name}: {err}  ({job.command()})" for job, err in problems[:20]
        )
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise LemonError(
            f"{len(problems)} of {len(jobs)} job(s) would fail at start:\n{lines}{more}"
        )


@launcher("local")
def local(jobs: list[Job], **opts: Any) -> None:
    """Sequentially, each job in a child process."""
    run_local(jobs, n_workers=1)


def _visible_gpus() -> list[str]:
    """CUDA device ids this process may use (CUDA_VISIBLE_DEVICES, else all that torch sees)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


@launcher(
    "local_parallel",
    options=(
        Option(
            "n_workers",
            None,
            "Jobs at a time (default: one per GPU, else one per CPU core).",
            int,
            minimum=1,
        ),
    ),
)
def local_parallel(jobs: list[Job], n_workers: int | None = None, **opts: Any) -> None:
    """``n_workers`` child processes at a time; with GPUs, worker i sees only GPU i (mod #GPUs)."""
    gpus = _visible_gpus()
    if n_workers is None:
        n_workers = len(gpus) or os.cpu_count() or 1
    run_local(jobs, n_workers=n_workers, gpus=gpus)


@launcher("debug")
def debug(jobs: list[Job], **opts: Any) -> None:
    """In this process, sequentially (no isolation: use for debugging only)."""
    run_in_process(jobs)


@launcher(
    "slurm",
    options=(
        Option("max_slurm_jobs", 400, "Array tasks running at once.", int, minimum=1),
        Option("slurm_partition", None, "Partition (default: the cluster's).", str),
        Option("gpus", 0, "GPUs per job.", int, minimum=0),
        Option("cpus", 1, "CPUs per job.", int, minimum=1),
        Option("mem_gb", None, "Memory per job in GB.", float, minimum=0.001),
        Option("timeout_min", 240, "Time limit per job in minutes.", int, minimum=1),
        Option("wait", False, "Block until the job array has finished."),
    ),
)
def slurm(
    jobs: list[Job],
    output_root: str | Path = ".",
    max_slurm_jobs: int = 400,
    gpus: int = 0,
    cpus: int = 1,
    mem_gb: float | None = None,
    timeout_min: int = 240,
    slurm_partition: str | None = None,
    wait: bool = False,
    **opts: Any,
) -> None:
    """A submitit job array in a fresh folder ``<output_root>/<experiment>/.submitit/<launch>/``."""
    from lemon.sweep import slurm as sl

    if not jobs:
        return
    folder = sl.launch_folder(Path(output_root).expanduser().absolute(), jobs[0].experiment)
    ids = sl.submit(
        jobs,
        folder,
        timeout_min=timeout_min,
        gpus=gpus,
        cpus=cpus,
        mem_gb=mem_gb,
        partition=slurm_partition,
        max_jobs=max_slurm_jobs,
    )
    print(
        f"Submitted {len(ids)} job(s) to Slurm (array {ids[0].split('_')[0]}); submitit logs in {folder}"
    )
    if wait:
        failed = sl.wait(jobs)
        for job in failed:
            print(f"FAILED: {job.run_dir}\n    log: {job.log_path}")
        print(f"Slurm array finished: {len(jobs) - len(failed)} done, {len(failed)} failed.")


# ------------------------------------------------------------------------------ fan-out of one command
#: launchers a fan-out command (python -m lemon.embed, python -m lemon.scale.parts) takes
FAN_OUT_LAUNCHERS = ("local", "local_parallel", "slurm", "debug", "dummy")


def add_fan_out_flags(parser: Any, choices: tuple[str, ...] = FAN_OUT_LAUNCHERS) -> None:
    """``--command_launcher``, ``--no_wait`` and the options of the launchers ``choices``, one help group
    per launcher, on ``parser`` (an argparse parser)."""
    parser.add_argument(
        "--command_launcher",
        default="local",
        choices=choices,
        help="How the jobs run (default: local, one after another).",
    )
    parser.add_argument(
        "--no_wait", action="store_true", help="slurm: return once submitted (rerun to finish)."
    )
    seen = {"wait"}
    for name in choices:
        options = [o for o in LAUNCHERS.get(name).options if o.name not in seen]
        if not options:
            continue
        group = parser.add_argument_group(f"--command_launcher {name}")
        for o in options:
            seen.add(o.name)
            group.add_argument(f"--{o.name}", type=o.type, default=o.default, help=o.help)


def launch_missing(jobs: list[Job], options: dict[str, Any], root: Path, what: str) -> str:
    """Run the jobs that are not done with ``options['command_launcher']`` (waited for unless
    ``options['no_wait']``), printing their counts and failures; ``root`` holds the Slurm logs.

    Returns 'done' (every job is done), 'dry_run', 'running' (submitted, not finished) or 'failed'.
    """
    from lemon import sweep as sw

    for warning in sw.refresh_states(jobs):
        print(f"warning: {warning}")
    print(sw.format_counts(jobs))
    todo = sw.to_launch(jobs)
    name = options["command_launcher"]
    chosen = LAUNCHERS.get(name)
    if todo:
        print(f"Launching {len(todo)} {what} job(s) with '{name}'.")
        if chosen.dry_run:
            chosen(todo)
            return "dry_run"
        sw.clear_dirs(todo)
        chosen(todo, **{**options, "output_root": root, "wait": not options.get("no_wait")})
        sw.refresh_states(jobs)
        print(sw.format_counts(jobs))
    failed = [job for job in jobs if job.state == sw.State.INCOMPLETE]
    for job in failed:
        print(f"FAILED: {what} {job.run_dir.name}: {job.run_dir}\n    log: {job.log_path}")
    if failed:
        return "failed"
    if any(job.state != sw.State.DONE for job in jobs):
        print(
            f"{what.capitalize()} jobs are still running; run this command again when they are done."
        )
        return "running"
    return "done"
