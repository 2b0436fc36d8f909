"""Jobs of a sweep: run folders named by a hash of the job's arguments, and their state read from disk.

Layout: ``<output_root>/<experiment>/<md5 of the sorted sweep args>/`` (:func:`lemon.run.config.run_hash`; only
the args the experiment sets are hashed, so adding a flag with a default never orphans finished runs).
The job's own outputs land there (``--output_dir``) plus ``job_id`` (who runs it) and ``job_output.txt``
(the job process's stdout and stderr, tracebacks included).

States: DONE (``done`` exists; written last), RUNNING (``job_id`` names a live local process or a Slurm job
that ``squeue`` lists), INCOMPLETE (the folder exists otherwise: crashed, killed, cancelled) and
NOT_LAUNCHED (no folder).
"""

from __future__ import annotations

import contextlib
import enum
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lemon.core.errors import LemonError
from lemon.core.io import DONE, atomic_write_text
from lemon.core.processes import LOCAL_PREFIX, local_job_alive
from lemon.core.registry import Registry
from lemon.run.config import run_hash
from lemon.sweep.grid import Experiment, RunRef

JOB_ID = "job_id"
JOB_OUTPUT = "job_output.txt"


class State(str, enum.Enum):
    NOT_LAUNCHED = "not launched"
    RUNNING = "running"
    INCOMPLETE = "incomplete"
    DONE = "done"


@dataclass
class Job:
    """One run of a sweep: ``python -m <script> <flags> --output_dir <run_dir>``."""

    experiment: str
    script: str
    args: dict[str, Any]  # flag dict as the experiment wrote it (RunRefs resolved to folders)
    hash_args: dict[str, Any]  # what is hashed (RunRefs as root-free '<experiment>/<hash>')
    run_dir: Path
    requires: tuple[
        Path, ...
    ] = ()  # run folders (RunRefs) that must be DONE before this job can start
    state: State = State.NOT_LAUNCHED
    job_id: str | None = None

    @property
    def hash(self) -> str:
        return self.run_dir.name

    def argv(self) -> list[str]:
        """The script's command-line arguments, ``--output_dir`` last."""
        return [*to_flags(self.args), "--output_dir", str(self.run_dir)]

    def command(self) -> str:
        """Shell form, for printing: ``python -m run_lemon --dataset ... --output_dir ...``."""
        return shlex.join(["python", "-m", self.script, *self.argv()])

    @property
    def log_path(self) -> Path:
        """Where the job's stdout/stderr (and any traceback) are, as recorded in ``job_id``."""
        return Path(read_job_id(self.run_dir).get("log", self.run_dir / JOB_OUTPUT))

    @property
    def job_label(self) -> str:
        """``  [job 1234_5]`` when a job id is recorded (Slurm or ``local:...``), else ''."""
        return f"  [job {self.job_id}]" if self.job_id else ""

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.args.items()))
        return f"{self.state.value:>12}: {self.run_dir}{self.job_label}  {shown}"


def to_flags(args: Mapping[str, Any]) -> list[str]:
    """``{'knn_k': 5, 'normalize_d1': False, 'real_dataset': True}`` -> ``['--knn_k', '5', '--real_dataset']``.

    Keys in sorted order; True is a bare flag, False and None are left out; lists are rejected (no run_lemon
    flag takes several values, and a list in a flag dict is almost always a grid written without expand).
    """
    flags: list[str] = []
    for key, value in sorted(args.items()):
        if isinstance(value, bool):
            flags += [f"--{key}"] if value else []
        elif value is None:
            continue
        elif isinstance(value, (list, tuple, set, dict)):
            raise LemonError(
                f"Flag '{key}' has the value {value!r}; a job takes one value per flag "
                "(write choices as a grid and expand it)."
            )
        else:
            flags += [f"--{key}", str(value)]
    return flags


def build_jobs(
    experiment: Experiment, output_root: str | os.PathLike, registry: Registry | None = None
) -> list[Job]:
    """The jobs of ``experiment`` under ``output_root`` (states not read yet; see :func:`read_states`).

    ``registry`` resolves :class:`RunRef` values (experiment name -> Experiment), e.g.
    ``experiments.EXPERIMENTS``; an experiment without RunRefs needs none.
    """
    root = Path(output_root).expanduser().absolute()  # jobs may run elsewhere (Slurm)
    jobs, seen = [], {}
    for grid_args in experiment.grid():
        if "output_dir" in grid_args:
            raise LemonError(
                f"Experiment {experiment.name} sets output_dir; the sweep sets it to the run "
                "folder. Remove it from the grid."
            )
        hash_args = _hash_args(grid_args, registry)
        args = {
            k: str(root / hash_args[k]) if isinstance(v, RunRef) else v
            for k, v in grid_args.items()
        }
        run_dir = root / experiment.name / run_hash(hash_args)
        if run_dir in seen:
            raise LemonError(f"Experiment {experiment.name} lists the run {grid_args} twice.")
        seen[run_dir] = True
        requires = tuple(Path(args[k]) for k, v in grid_args.items() if isinstance(v, RunRef))
        jobs.append(Job(experiment.name, experiment.script, args, hash_args, run_dir, requires))
    return jobs


def _hash_args(
    args: Mapping[str, Any], registry: Registry | None, depth: int = 0
) -> dict[str, Any]:
    """``args`` with every RunRef replaced by its root-free ``<experiment>/<hash>``."""
    return {
        k: _ref_key(v, registry, depth) if isinstance(v, RunRef) else v for k, v in args.items()
    }


def _ref_key(ref: RunRef, registry: Registry | None, depth: int = 0) -> str:
    """``<experiment>/<hash>`` of the unique run of ``ref.experiment`` whose args include ``ref.match``
    (the referenced run may refer to earlier runs in turn: train -> score -> retrain)."""
    if depth >= 8:
        raise LemonError(
            f"{ref!r}: runs refer to each other more than 8 levels deep (a cycle of RunRefs?)."
        )
    if registry is None:
        raise LemonError(
            f"{ref!r} names a run of another experiment: pass the experiments registry to resolve it."
        )
    other = registry.get(ref.experiment)()
    hits = [args for args in other.grid() if all(args.get(k) == v for k, v in ref.match.items())]
    if len(hits) != 1:
        raise LemonError(
            f"{ref!r} matches {len(hits)} runs of experiment '{ref.experiment}', expected "
            "exactly 1; add arguments to the RunRef to single one out."
        )
    return f"{other.name}/{run_hash(_hash_args(hits[0], registry, depth + 1))}"


# ---------------------------------------------------------------------------------------------- job ids
def write_job_id(run_dir: Path, job_id: str, log: Path | str | None = None) -> None:
    """Record who runs this job: line 1 the id (Slurm ``1234_5`` or ``local:host:pid:start``), then log=..."""
    atomic_write_text(run_dir / JOB_ID, job_id + "\n" + (f"log={log}\n" if log else ""))


def read_job_id(run_dir: Path) -> dict[str, str]:
    """``{'id': ..., 'log': ...}`` from ``job_id`` (empty when absent or unreadable)."""
    try:
        lines = (run_dir / JOB_ID).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    if not lines or not lines[0].strip():
        return {}
    info = {"id": lines[0].strip()}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if sep:
            info[key] = value
    return info


# ---------------------------------------------------------------------------------------------- states
def read_states(jobs: Iterable[Job], slurm_active: set[str] | None = None) -> None:
    """Set each job's state from disk: DONE, INCOMPLETE (folder without ``done``) or NOT_LAUNCHED; an
    incomplete job is RUNNING when its ``job_id`` names a live local process, or a Slurm job listed in
    ``slurm_active`` (the ids ``squeue`` lists; :func:`lemon.sweep.status.refresh_states` asks it)."""
    for job in jobs:
        job.job_id = None
        if (job.run_dir / DONE).is_file():
            job.state = State.DONE
            job.job_id = read_job_id(job.run_dir).get(
                "id"
            )  # shown by status; a done job is not polled
        elif job.run_dir.is_dir():
            job.state = State.INCOMPLETE
            job.job_id = read_job_id(job.run_dir).get("id")
            if job.job_id and _alive(job.job_id, slurm_active or set()):
                job.state = State.RUNNING
        else:
            job.state = State.NOT_LAUNCHED


def _alive(job_id: str, slurm_active: set[str]) -> bool:
    return local_job_alive(job_id) if is_local(job_id) else job_id in slurm_active


def is_local(job_id: str) -> bool:
    """Whether ``job_id`` names a process on a machine (``local:...``), not a Slurm job."""
    return job_id.startswith(LOCAL_PREFIX)


def count_states(jobs: Iterable[Job]) -> dict[State, int]:
    counts = {state: 0 for state in State}
    for job in jobs:
        counts[job.state] += 1
    return counts


def format_counts(jobs: list[Job]) -> str:
    """``96 jobs: 90 done, 2 running, 1 incomplete, 3 not launched.``"""
    counts = count_states(jobs)
    order = (State.DONE, State.RUNNING, State.INCOMPLETE, State.NOT_LAUNCHED)
    return f"{len(jobs)} jobs: " + ", ".join(f"{counts[s]} {s.value}" for s in order) + "."


def check_writable(folder: str | os.PathLike, flag: str, write: bool = True) -> None:
    """Raise LemonError (one line naming ``flag``) unless ``folder`` is, or can be created as, a folder
    (a writable one unless ``write`` is False)."""
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise LemonError(
            f"{flag} {folder} is a file, not a folder; pass a folder (created when missing)."
        )
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise LemonError(
            f"{flag} {folder} cannot be created: {existing} is a file; pass another folder."
        )
    if write and not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" (its parent {existing} is not writable)"
        raise LemonError(f"{flag} {folder} is not writable{where}; pass a folder you can write to.")


def to_launch(jobs: Iterable[Job], restart_running: bool = False) -> list[Job]:
    """NOT_LAUNCHED and INCOMPLETE jobs (plus RUNNING ones with ``restart_running``)."""
    wanted = {State.NOT_LAUNCHED, State.INCOMPLETE} | (
        {State.RUNNING} if restart_running else set()
    )
    return [job for job in jobs if job.state in wanted]


def blocked(job: Job) -> list[Path]:
    """The run folders ``job`` needs (RunRefs) that are not DONE yet."""
    return [path for path in job.requires if not (path / DONE).is_file()]


def clear_dirs(jobs: Iterable[Job]) -> None:
    """Remove what earlier attempts left in the jobs' run folders (they are NOT_LAUNCHED afterwards).

    Launchers create a job's folder when it starts (or is queued on Slurm), so jobs still waiting in a
    local launcher's queue show as NOT_LAUNCHED, not INCOMPLETE.
    """
    for job in jobs:
        if job.run_dir.exists():
            shutil.rmtree(job.run_dir)
        job.state, job.job_id = State.NOT_LAUNCHED, None


def delete(jobs: Iterable[Job]) -> int:
    """Remove the run folders of ``jobs``; returns how many existed."""
    n = 0
    for job in jobs:
        if job.run_dir.exists():
            shutil.rmtree(job.run_dir)
            n += 1
        job.state, job.job_id = State.NOT_LAUNCHED, None
    return n


SWEEP_LOCK = ".sweep.lemon.lock"


@contextlib.contextmanager
def sweep_lock(
    root: str | os.PathLike,
    experiment: str,
    wait: bool = False,
    note: Callable[[str], None] = print,
) -> Iterator[None]:
    """Hold the sweep's lock (``<root>/<experiment>/.sweep.lemon.lock``) while launching or deleting its
    runs: a second launcher fails at once, in one line naming the holder (pid, host, since when), or with
    ``wait`` waits for it (``note`` says so once). Two launchers thus never clear or run the same jobs,
    call each other's jobs failed, or write over each other's job_output.txt."""
    from lemon.core.errors import RunLockedError
    from lemon.core.lock import RunLock

    folder = Path(root).expanduser().absolute() / experiment
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunLock(
        folder / SWEEP_LOCK,
        folder,
        what=f"sweep {experiment} in {Path(root).expanduser()}",
        fix="pass --wait_for_lock to launch once it is done (its finished runs are not launched again)",
        holder="another launcher",
    )
    told = False
    while True:
        try:
            lock.acquire()
            break
        except RunLockedError as err:
            if not wait:
                raise
            if not told:
                note(f"waiting: {err}".split("; wait for it")[0] + " ...")
                told = True
            time.sleep(1.0)
    try:
        yield
    finally:
        lock.release()
