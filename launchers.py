"""How a sweep's jobs run: the LAUNCHERS registry, one signature for all: ``fn(jobs, **opts) -> None``.

- ``dummy``: print the commands, run nothing.
- ``local``: one job at a time, each in its own process (a crash or kill -9 of a job does not stop the sweep).
- ``local_parallel``: ``--n_workers`` jobs at a time (default: one per visible GPU, else one per CPU core).
- ``debug``: in this process, one after another (breakpoints work; a crash is reported, the sweep goes on).
- ``slurm``: one submitit job array (``--max_slurm_jobs`` at a time) of a Python function that calls
  ``run_lemon.main``; returns once submitted (``--wait`` blocks until the array finishes).

Options not used by a launcher are ignored (sweep.py says so when one was given). Jobs arrive with empty
run folders; each job writes its outputs, ``job_id`` and ``done`` (last) there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lemon.registry import Registry
from lemon.sweep import Job, run_in_process, run_local

LAUNCHERS: Registry = Registry("launcher")


@LAUNCHERS.register("dummy")
def dummy(jobs: list[Job], **opts: Any) -> None:
    """Print each job's command (nothing runs; the run folders stay empty)."""
    for job in jobs:
        print(job.command())


@LAUNCHERS.register("local")
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


@LAUNCHERS.register("local_parallel")
def local_parallel(jobs: list[Job], n_workers: int | None = None, **opts: Any) -> None:
    """``n_workers`` child processes at a time; with GPUs, worker i sees only GPU i (mod #GPUs)."""
    gpus = _visible_gpus()
    if n_workers is None:
        n_workers = len(gpus) or os.cpu_count() or 1
    run_local(jobs, n_workers=n_workers, gpus=gpus)


@LAUNCHERS.register("debug")
def debug(jobs: list[Job], **opts: Any) -> None:
    """In this process, sequentially (no isolation: use for debugging only)."""
    run_in_process(jobs)


@LAUNCHERS.register("slurm")
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
