"""Sweeps: experiment grids, jobs with hashed run folders and on-disk states, local and Slurm execution.

``experiments.py`` registers the grids, ``launchers.py`` the ways to run them, ``sweep.py`` is the CLI;
the logic lives here. Finished runs are read back with :func:`lemon.tables.results.load_records`.
"""

from __future__ import annotations

from lemon.sweep.grid import Experiment, RunRef, expand
from lemon.sweep.jobs import (
    Job,
    State,
    blocked,
    build_jobs,
    check_writable,
    clear_dirs,
    count_states,
    delete,
    format_counts,
    read_states,
    sweep_lock,
    to_launch,
)
from lemon.sweep.local import JobFailedError, Outcome, run_in_process, run_job, run_local
from lemon.sweep.status import cancel_running, refresh_states

__all__ = [
    "Experiment",
    "Job",
    "JobFailedError",
    "Outcome",
    "RunRef",
    "State",
    "blocked",
    "build_jobs",
    "cancel_running",
    "check_writable",
    "clear_dirs",
    "count_states",
    "delete",
    "expand",
    "format_counts",
    "read_states",
    "refresh_states",
    "run_in_process",
    "run_job",
    "run_local",
    "sweep_lock",
    "to_launch",
]
