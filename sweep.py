"""Launch, inspect and clean up a sweep: every run of an experiment of experiments.py.

Usage:
    python sweep.py status --experiment smoke --output_root runs
    python sweep.py launch --experiment smoke --output_root runs --command_launcher local_parallel
    python sweep.py launch --experiment lemon_all --output_root runs --command_launcher slurm \\
        --slurm_partition gpu --gpus 1 --cpus 4 --mem_gb 32 --max_slurm_jobs 50
    python sweep.py launch --experiment lemon_all --output_root runs --command_launcher dummy
    python sweep.py delete_incomplete --experiment smoke --output_root runs --skip_confirmation
    python sweep.py tables --output_root runs [--experiment lemon_all ...]   # the paper's tables

Runs live in ``<output_root>/<experiment>/<hash of the run's flags>/``. ``launch`` starts only the runs that
are not done (NOT_LAUNCHED, and INCOMPLETE after emptying their folder) and leaves running ones alone
unless ``--restart_running``; running it again after everything finished launches nothing. Destructive
commands ask first unless ``--skip_confirmation`` (no answer, e.g. no stdin, means no). The ``dummy``
launcher checks every job's flags and exits non-zero naming the jobs that would fail. ``tables`` builds the
paper's tables from the finished runs (:mod:`lemon.tables.aggregate`), counting runs of the grids never
launched.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

from lemon.core.cli import command

COMMANDS = ("launch", "status", "delete_incomplete", "delete_all", "tables")


def build_parser() -> argparse.ArgumentParser:
    """The sweep's own flags, plus every option a launcher declares (grouped by launcher)."""
    from experiments import EXPERIMENTS
    from lemon.core.flags import HelpfulParser
    from lemon.sweep.launchers import LAUNCHERS

    p = HelpfulParser(prog="python sweep.py", description="Run a grid of LEMoN runs.")
    p.add_argument("command", choices=COMMANDS)
    p.add_argument(
        "--experiment",
        required=True,
        metavar="NAME",
        help=f"Experiment of experiments.py. Choices: {', '.join(EXPERIMENTS.names())}.",
    )
    p.add_argument(
        "--output_root",
        "--output_dir",
        dest="output_root",
        required=True,
        help="Root folder; runs go to <output_root>/<experiment>/<hash>/.",
    )
    p.add_argument(
        "--command_launcher",
        default="local",
        metavar="NAME",
        help=f"How jobs run. Choices: {', '.join(LAUNCHERS.names())} (default: local).",
    )
    p.add_argument("--skip_confirmation", action="store_true", help="Do not ask before acting.")
    p.add_argument(
        "--restart_running", action="store_true", help="Cancel running jobs and launch them again."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="List every job with its state.")
    p.add_argument(
        "--wait_for_lock",
        action="store_true",
        help="When another launcher holds the sweep, wait for it instead of stopping.",
    )
    seen: set[str] = set()
    for name in LAUNCHERS.names():
        options = [o for o in LAUNCHERS.get(name).options if o.name not in seen]
        if not options:
            continue
        group = p.add_argument_group(f"--command_launcher {name}")
        for o in options:
            seen.add(o.name)
            if o.type is None:
                group.add_argument(f"--{o.name}", action="store_true", help=o.help)
            else:
                default = "" if o.default is None else f" (default: {o.default})"
                group.add_argument(
                    f"--{o.name}", type=o.type, default=o.default, help=o.help + default
                )
    return p


def confirm(question: str) -> bool:
    """Ask on stdin; anything but y/yes is a no. Without a terminal there is nobody to ask: no."""
    if not sys.stdin.isatty():
        print(f"{question} -- stdin is not a terminal, so nobody can answer: taken as no.")
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def _aborted(done: str, verb: str) -> None:
    """The one-line error of a destructive command that was not confirmed."""
    why = "" if sys.stdin.isatty() else "stdin is not a terminal, so nobody could confirm: "
    print(
        f"error: {why}nothing {done}; pass --skip_confirmation to {verb} without asking.",
        file=sys.stderr,
    )


def _ignored(args: argparse.Namespace, parser: argparse.ArgumentParser, launcher) -> list[str]:
    """Options given on the command line that the chosen launcher does not read."""
    from lemon.sweep.launchers import option_names

    own = {o.name for o in launcher.options}
    return [
        f"--{o}" for o in sorted(option_names() - own) if getattr(args, o) != parser.get_default(o)
    ]


@command()
def main(argv: Sequence[str] | None = None) -> int:
    from experiments import EXPERIMENTS

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tables"]:
        from lemon.tables.aggregate import main as tables

        return tables(argv[1:], experiments=EXPERIMENTS)
    from lemon import sweep as sw
    from lemon.sweep.launchers import LAUNCHERS

    # job progress, printed plainly for the CLI's duration
    sweep_log = logging.getLogger("lemon.sweep")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = sweep_log.level, sweep_log.propagate
    sweep_log.addHandler(handler)
    sweep_log.setLevel(logging.INFO)
    sweep_log.propagate = False
    parser = build_parser()
    args = parser.parse_args(argv)
    from lemon.sweep.launchers import check_options

    check_options(vars(args))
    try:
        experiment = EXPERIMENTS.get(args.experiment)()
        launcher = LAUNCHERS.get(args.command_launcher)
        writes = args.command != "status" and not (args.command == "launch" and launcher.dry_run)
        # one line, not a traceback later
        sw.check_writable(args.output_root, "--output_root", write=writes)
        jobs = sw.build_jobs(experiment, args.output_root, EXPERIMENTS)
        for warning in sw.refresh_states(jobs):
            print(f"warning: {warning}")
        for job in jobs if args.verbose else []:
            print(job)
        print(sw.format_counts(jobs))
        return _command(args, parser, experiment.name, jobs, launcher)
    except OSError as err:  # e.g. a run folder that cannot be created or removed
        print(
            f"error: {err.strerror or err}: {err.filename or args.output_root}; check --output_root "
            f"{args.output_root} (permissions, free space).",
            file=sys.stderr,
        )
        return 2
    finally:
        sweep_log.removeHandler(handler)
        sweep_log.setLevel(saved[0])
        sweep_log.propagate = saved[1]


def _command(args, parser, name, jobs, launcher) -> int:
    from lemon import sweep as sw

    State = sw.State
    if args.command == "status":
        for job in [j for j in jobs if j.state == State.INCOMPLETE][:20]:
            print(f"  incomplete: {job.run_dir}{job.job_label}  (log: {job.log_path})")
        return 0
    if args.command in ("delete_incomplete", "delete_all"):

        def doomed_jobs():
            return [
                j
                for j in jobs
                if j.state == State.INCOMPLETE
                or (args.command == "delete_all" and j.state in (State.DONE, State.RUNNING))
            ]

        doomed = doomed_jobs()
        print(f"About to delete {len(doomed)} run folder(s) of {name}.")
        if not doomed:
            return 0
        if not args.skip_confirmation and not confirm("Delete them?"):
            _aborted("deleted", "delete")
            return 1
        with _locked(args, name, jobs):
            doomed = [j for j in doomed_jobs() if j in doomed]  # as confirmed, states read again
            cancelled = sw.cancel_running(doomed)
            deleted = sw.delete(doomed)
        print(f"Cancelled {len(cancelled)} running job(s); deleted {deleted} run folder(s).")
        return 0

    todo = sw.to_launch(jobs, args.restart_running)
    waiting = [j for j in todo if sw.blocked(j)]
    for job in waiting:
        print(
            f"  waiting: {job.run_dir} needs {', '.join(map(str, sw.blocked(job)))} to be done first"
        )
    todo = [j for j in todo if j not in waiting]
    running = sum(j.state == State.RUNNING for j in jobs) if not args.restart_running else 0
    print(
        f"About to launch {len(todo)} job(s) with '{args.command_launcher}'"
        + (
            f"; {running} running job(s) left alone (--restart_running relaunches them)."
            if running
            else "."
        )
    )
    for opt in _ignored(args, parser, launcher):
        print(f"note: {opt} is not used by the '{args.command_launcher}' launcher; ignored.")
    if not todo:
        return 0
    if launcher.dry_run:
        launcher(todo)
        return 0
    if not args.skip_confirmation and not confirm(f"Launch {len(todo)} job(s)?"):
        _aborted("launched", "launch")
        return 1
    with _locked(args, name, jobs):
        # what another launcher finished (or started) before this one held the sweep is not launched
        todo = [j for j in sw.to_launch(jobs, args.restart_running) if not sw.blocked(j)]
        if not todo:
            print("Nothing left to launch: another launcher ran these jobs.")
            return 0
        sw.cancel_running([j for j in todo if j.state == State.RUNNING])
        sw.clear_dirs(todo)
        launcher(todo, **vars(args))
    sw.refresh_states(todo)
    failed = [j for j in todo if j.state == State.INCOMPLETE]
    print(f"Launched {len(todo)} job(s): " + sw.format_counts(todo).split(": ", 1)[1])
    return 1 if failed else 0


@contextlib.contextmanager
def _locked(args, name: str, jobs):
    """Hold the sweep's lock (one launcher or deletion at a time), then read the jobs' states again."""
    from lemon import sweep as sw

    with sw.sweep_lock(args.output_root, name, wait=args.wait_for_lock):
        sw.refresh_states(jobs)
        yield


if __name__ == "__main__":
    sys.exit(main())
