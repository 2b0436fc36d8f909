"""Sweeps: experiment grids, jobs with hashed run folders and on-disk states, local and Slurm execution.

``experiments.py`` registers the grids, ``launchers.py`` the ways to run them, ``sweep.py`` is the CLI;
the logic lives here. Finished runs are read back with :func:`lemon.results.load_records`.
"""

from __future__ import annotations

from lemon.sweep.grid import EXPERIMENTS, Experiment, RunRef, expand, load_experiments
from lemon.sweep.jobs import (
    Job,
    State,
    blocked,
    build_jobs,
    cancel_running,
    check_writable,
    clear_dirs,
    count_states,
    delete,
    format_counts,
    read_states,
    to_launch,
)
from lemon.sweep.local import JobFailedError, Outcome, run_in_process, run_job, run_local

__all__ = [
    "EXPERIMENTS",
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
    "load_experiments",
    "read_states",
    "run_in_process",
    "run_job",
    "run_local",
    "to_launch",
]
