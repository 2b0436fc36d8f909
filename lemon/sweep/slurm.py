"""Slurm through submitit: job arrays of a Python function (no shell strings), and ``squeue`` queries.

Each launch gets its own submitit folder ``<output_root>/<experiment>/.submitit/<timestamp>-<uuid>/``: job
ids restart at 1 on a fresh controller, and a reused folder would hand back a stale result. Job states come
from ``squeue`` (pending or running = listed), never from ``sacct``, which needs a slurmdbd that small and
local clusters do not run; a finished job's outcome is its run folder (``done`` or not).
"""

from __future__ import annotations

import getpass
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lemon.core.errors import LemonError
from lemon.core.io import DONE
from lemon.sweep.jobs import Job, write_job_id
from lemon.sweep.local import run_job

log = logging.getLogger("lemon.sweep")
SETUP_HINT = (
    "start a local one with `bash scripts/local_slurm.sh start`, or use --command_launcher local"
)


class SlurmError(LemonError):
    """Slurm is missing, not answering, or refused a submission."""


def _run(cmd: list[str], timeout: float = 30) -> str:
    if shutil.which(cmd[0]) is None:
        raise SlurmError(f"Slurm is not available: '{cmd[0]}' is not installed; {SETUP_HINT}.")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"Slurm did not answer '{' '.join(cmd)}' within {timeout:.0f} s; {SETUP_HINT}."
        ) from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise SlurmError(
            f"'{' '.join(cmd)}' failed: {msg[-1] if msg else f'exit {proc.returncode}'}; "
            f"{SETUP_HINT}."
        )
    return proc.stdout


def check_available() -> None:
    """Raise SlurmError (with the fix) unless a controller answers ``sinfo``."""
    _run(["sinfo", "-h", "-o", "%P"], timeout=15)


def slurm_unavailable_reason() -> str | None:
    """None when Slurm answers, else why not (for pytest skip reasons)."""
    try:
        check_available()
    except SlurmError as err:
        return str(err)
    return None


def active_job_ids(user: str | None = None) -> set[str]:
    """Ids (``1234`` or array tasks ``1234_5``) that Slurm lists as pending or running for ``user``."""
    out = _run(["squeue", "-h", "-r", "-u", user or getpass.getuser(), "-o", "%i"])
    return {line.strip() for line in out.splitlines() if line.strip()}


def cancel(job_ids: Sequence[str], timeout_s: float = 30.0) -> None:
    """``scancel`` the given ids and wait until Slurm no longer lists them (so their folders are idle)."""
    if not job_ids:
        return
    _run(["scancel", *job_ids])
    deadline = time.time() + timeout_s
    while set(job_ids) & active_job_ids() and time.time() < deadline:
        time.sleep(0.2)


def launch_folder(output_root: Path, experiment: str) -> Path:
    """A fresh submitit folder for one launch (never reused; see module doc)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(output_root) / experiment / ".submitit" / f"{stamp}-{uuid.uuid4().hex[:6]}"


def submit(
    jobs: Sequence[Job],
    folder: Path,
    *,
    timeout_min: int = 240,
    gpus: int = 0,
    cpus: int = 1,
    mem_gb: float | None = None,
    partition: str | None = None,
    max_jobs: int = 400,
    extra: dict[str, Any] | None = None,
) -> list[str]:
    """Submit ``jobs`` as one job array of :func:`run_job`; write each ``job_id``; return the ids.

    ``max_jobs`` is the array's parallelism (``--array=...%max_jobs``). ``extra``: more submitit
    parameters (``slurm_*`` names); unknown ones are rejected with the valid list.
    """
    import submitit

    if not jobs:
        return []
    check_available()
    for job in jobs:
        job.run_dir.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster="slurm")
    params: dict[str, Any] = {
        "timeout_min": timeout_min,
        "cpus_per_task": cpus,
        "tasks_per_node": 1,
        "nodes": 1,
        "slurm_array_parallelism": max_jobs,
        "name": f"lemon-{jobs[0].experiment}",
    }
    if gpus:
        params["gpus_per_node"] = gpus
    if mem_gb:
        params["mem_gb"] = mem_gb
    if partition:
        params["slurm_partition"] = partition
    params.update(extra or {})
    try:
        executor.update_parameters(**params)
    except ValueError as err:  # submitit lists the valid parameters in its message
        raise SlurmError(f"Invalid Slurm parameter: {err}") from None
    try:
        submitted = executor.map_array(
            run_job, [job.argv() for job in jobs], [job.script for job in jobs]
        )
    except Exception as err:
        lines = str(err).strip().splitlines()
        raise SlurmError(
            f"sbatch refused the job array: {lines[-1] if lines else err!r}; check "
            "--slurm_partition/--gpus/--cpus/--mem_gb against `sinfo`."
        ) from None
    for job, sub in zip(jobs, submitted):
        write_job_id(job.run_dir, sub.job_id, log=sub.paths.stderr)
        job.job_id = sub.job_id
    log.info(
        "submitted %d job(s) as array %s; submitit folder %s",
        len(jobs),
        submitted[0].job_id.split("_")[0],
        folder,
    )
    return [sub.job_id for sub in submitted]


def wait(jobs: Sequence[Job], poll_s: float = 0.5, timeout_s: float | None = None) -> list[Job]:
    """Block until no job of ``jobs`` is pending or running; return those that did not finish ``done``."""
    ids = {job.job_id for job in jobs if job.job_id}
    start = time.time()
    while ids & active_job_ids():
        if timeout_s is not None and time.time() - start > timeout_s:
            raise SlurmError(
                f"Slurm jobs still running after {timeout_s:.0f} s: "
                f"{sorted(ids & active_job_ids())}."
            )
        time.sleep(poll_s)
    return [job for job in jobs if not (job.run_dir / DONE).is_file()]
