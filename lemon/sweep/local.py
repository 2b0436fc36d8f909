"""Run sweep jobs on this machine, each in its own process, one or several at a time.

A job runs ``<script>.main(argv)`` (``run_lemon`` by default) in a child process forked from a
``multiprocessing`` forkserver that has imported the script once, so a job starts in milliseconds instead of
re-importing torch, and a crash, ``kill -9`` or out-of-memory kill of one job never takes the sweep down.
The child records itself in the run folder's ``job_id`` (so ``sweep.py status`` shows it RUNNING while it
lives) and sends its stdout and stderr, tracebacks included, to ``job_output.txt``. A job succeeded when
its process exited with 0 *and* left a ``done`` marker.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lemon.core.io import DONE
from lemon.core.processes import local_job_id
from lemon.sweep.jobs import JOB_OUTPUT, Job, write_job_id

log = logging.getLogger("lemon.sweep")


class JobFailedError(RuntimeError):
    """A job's script returned a non-zero exit code."""


def call_main(argv: Sequence[str], script: str = "run_lemon") -> int:
    """``<script>.main(argv)`` as an exit code (``sys.exit`` / argparse errors included)."""
    module = importlib.import_module(script)
    saved, sys.argv = sys.argv, [f"{script}.py", *argv]  # what the run logs as its command line
    try:
        code = module.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
    return int(code or 0)


def run_job(argv: Sequence[str], script: str = "run_lemon") -> int:
    """Run ``<script>.main(argv)`` in this process; raise JobFailedError on a non-zero exit code.

    Module-level so that submitit (Slurm) can pickle it by reference. Under Slurm, CPU threads are capped
    at the allocation (``SLURM_CPUS_PER_TASK``).
    """
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        _limit_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
    code = call_main(argv, script)
    if code:
        raise JobFailedError(f"python -m {script} {shlex.join(argv)} exited with code {code}")
    return 0


def _job_process(
    script: str, argv: list[str], run_dir: str, env: dict[str, str], threads: int | None
) -> None:
    """Body of a job's child process: record the pid, redirect output, run, exit with the job's status."""
    run_dir_path = Path(run_dir)
    out = run_dir_path / JOB_OUTPUT
    write_job_id(run_dir_path, local_job_id(os.getpid()), log=out)
    os.environ.update(env)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    if "fork" in multiprocessing.get_all_start_methods():
        # The job's own workers (DataLoader) fork from the job, which has imported everything already; the
        # start method inherited from the sweep (forkserver) would boot a fresh interpreter that re-imports
        # torch for every worker of every epoch.
        multiprocessing.set_start_method("fork", force=True)
    try:
        if threads:
            _limit_threads(threads)
        code = call_main(argv, script)  # a non-zero code: the script printed its own one-line error
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.exit(code)  # multiprocessing turns this into the process's exit code


def _limit_threads(threads: int) -> None:
    """Cap BLAS/OpenMP/torch threads so parallel jobs do not oversubscribe the cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # libraries loaded later read these
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _context(
    scripts: set[str],
) -> multiprocessing.context.SpawnContext | multiprocessing.context.ForkServerContext:
    """The forkserver context, pre-importing the scripts (spawn where there is no forkserver).

    run_lemon imports its pipeline (torch, sklearn) lazily, so that is preloaded too. The forkserver
    starts once per process, with the preload list and environment of that moment; later calls reuse it
    (a job whose script was not preloaded imports it itself).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    heavy = ["lemon.run.pipeline"] if "run_lemon" in scripts else []
    ctx.set_forkserver_preload(["lemon.sweep.local", *sorted(scripts), *heavy])
    return ctx


@dataclass
class Outcome:
    """How one job ended."""

    job: Job
    ok: bool
    exitcode: int | None
    seconds: float

    def describe(self) -> str:
        if self.ok:
            return f"done in {self.seconds:.1f} s: {self.job.run_dir}"
        how = (
            f"killed by signal {-self.exitcode}"
            if self.exitcode is not None and self.exitcode < 0
            else f"exit code {self.exitcode}"
            if self.exitcode
            else "no 'done' marker"
        )
        path = self.job.run_dir / JOB_OUTPUT
        path = path if path.is_file() else self.job.run_dir / "log.txt"
        last = _last_line(path)
        return f"FAILED ({how}) after {self.seconds:.1f} s: {self.job.run_dir}\n    log: {path}" + (
            f"\n    {last}" if last else ""
        )


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def run_local(
    jobs: Sequence[Job], n_workers: int = 1, gpus: Sequence[str] = (), threads: int | None = None
) -> list[Outcome]:
    """Run ``jobs`` in child processes, ``n_workers`` at a time; returns one Outcome per job.

    ``gpus``: device ids; worker slot i sees only ``gpus[i % len(gpus)]`` (CUDA_VISIBLE_DEVICES).
    ``threads``: per-job cap on CPU threads (default: cores // n_workers when n_workers > 1).
    Failures are logged with their log path and never stop the remaining jobs.
    """
    if not jobs:
        return []
    n_workers = max(1, min(n_workers, len(jobs)))
    if threads is None and n_workers > 1:
        threads = max(1, (os.cpu_count() or 1) // n_workers)
    ctx = _context({job.script for job in jobs})
    pending = list(jobs)[::-1]
    running: dict[int, tuple[multiprocessing.process.BaseProcess, Job, int, float]] = {}
    free_slots = list(range(n_workers))[::-1]
    outcomes: list[Outcome] = []
    try:
        while pending or running:
            while pending and free_slots:
                job, slot = pending.pop(), free_slots.pop()
                job.run_dir.mkdir(parents=True, exist_ok=True)
                env = {"CUDA_VISIBLE_DEVICES": str(gpus[slot % len(gpus)])} if gpus else {}
                proc: multiprocessing.process.BaseProcess = ctx.Process(
                    target=_job_process,
                    name=f"lemon-job-{job.hash[:8]}",
                    args=(job.script, job.argv(), str(job.run_dir), env, threads),
                )
                proc.start()
                running[proc.sentinel] = (proc, job, slot, time.time())
            ready = multiprocessing.connection.wait(list(running))
            for sentinel in ready:
                # the sentinels given (ints); typeshed's wait() types any waitable
                proc, job, slot, start = running.pop(sentinel)  # type: ignore[arg-type]
                proc.join()
                ok = proc.exitcode == 0 and (job.run_dir / DONE).is_file()
                outcome = Outcome(job, ok, proc.exitcode, time.time() - start)
                outcomes.append(outcome)
                free_slots.append(slot)
                n = len(outcomes)
                (log.info if ok else log.error)("[%d/%d] %s", n, len(jobs), outcome.describe())
    finally:
        for proc, *_ in running.values():  # interrupted (Ctrl-C): do not leave orphans behind
            proc.terminate()
    return outcomes


def run_in_process(jobs: Sequence[Job]) -> list[Outcome]:
    """Run ``jobs`` one after another in this very process (for debugging with breakpoints)."""
    outcomes = []
    for i, job in enumerate(jobs, 1):
        start = time.time()
        job.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            run_job(job.argv(), job.script)
            ok, code = (job.run_dir / DONE).is_file(), 0
        except Exception:
            log.error("job raised:\n%s", traceback.format_exc())
            ok, code = False, 1
        outcome = Outcome(job, ok, code, time.time() - start)
        outcomes.append(outcome)
        (log.info if ok else log.error)("[%d/%d] %s", i, len(jobs), outcome.describe())
    return outcomes
