"""What a sweep's jobs are doing now, asking Slurm where they run there, and stopping running ones.

Imports one way: :mod:`lemon.sweep.jobs` (job folders and states on disk) <- :mod:`lemon.sweep.local`
(running jobs here) <- :mod:`lemon.sweep.slurm` (submitting and querying Slurm) <- this module.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

from lemon.core.io import DONE
from lemon.core.processes import local_job_alive
from lemon.sweep.jobs import Job, State, is_local, read_job_id, read_states
from lemon.sweep.slurm import SlurmError, active_job_ids, cancel


def refresh_states(jobs: Iterable[Job]) -> list[str]:
    """Set each job's state (see :func:`lemon.sweep.jobs.read_states`), asking ``squeue`` once when some
    unfinished job holds a Slurm id; returns warnings (e.g. Slurm could not be asked)."""
    jobs = list(jobs)
    slurm_ids = [
        i
        for job in jobs
        if not (job.run_dir / DONE).is_file()
        and (i := read_job_id(job.run_dir).get("id"))
        and not is_local(i)
    ]
    warnings, active = [], set()
    if slurm_ids:
        try:
            active = active_job_ids()
        except SlurmError as err:
            warnings.append(
                f"{err} -- {len(slurm_ids)} run(s) with a Slurm job id are shown as incomplete."
            )
    read_states(jobs, active)
    return warnings


def cancel_running(jobs: Iterable[Job]) -> list[str]:
    """Stop RUNNING jobs (``scancel`` for Slurm ids, SIGTERM for local processes); returns the ids."""
    running = [job.job_id for job in jobs if job.state == State.RUNNING and job.job_id]
    local = [i for i in running if is_local(i)]
    slurm = [i for i in running if not is_local(i)]
    for job_id in local:
        try:
            os.kill(int(job_id.rsplit(":", 2)[1]), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.time() + 10  # let them exit before their folders are emptied
    while any(local_job_alive(i) for i in local) and time.time() < deadline:
        time.sleep(0.1)
    if slurm:
        cancel(slurm)
    return local + slurm
