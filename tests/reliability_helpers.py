"""Run the project's command lines as real processes, fast, and look at what they leave on disk.

``run_cli`` starts ``python -m <module> ARGS`` as a child of a forkserver that imported the pipeline once
(milliseconds per process instead of seconds of imports): its own pid, its exit code, and its stdout and
stderr at the file-descriptor level, exactly what a user's terminal would show, tracebacks included. A
file-size limit can be set in the child (writes past it fail with a real ``EFBIG`` from the kernel).
``in_tmpfs`` runs a command in a private mount namespace on a tmpfs of a given size (a full disk) or
read-only, where ``unshare`` allows it.
"""

from __future__ import annotations

import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # sweep.py lives at the repo root
    sys.path.insert(0, str(REPO))
PRELOAD = [
    "lemon.sweep.local",
    "run_lemon",
    "lemon.run.pipeline",
    "lemon.tables.aggregate",
    "sweep",
    "open_clip",
]


@dataclass
class Outcome:
    """How a command ended: exit code, and what it printed."""

    rc: int | None
    out: str
    err: str

    def error_lines(self) -> list[str]:
        """stderr's lines, less the label-free rule's notes on the data (tiny tables make the estimate
        noisy, which it says; they are not errors of the command)."""
        return [
            line
            for line in self.err.splitlines()
            if line.strip() and "label-free rule:" not in line
        ]


def _child(module: str, argv: list[str], out: str, err: str, max_file_size: int | None) -> None:
    """Body of the command's process: stdout/stderr to files, optional file-size limit, run main."""
    # as in a terminal's foreground: a test session started in the background (``cmd &``, nohup) passes
    # on an ignored SIGINT, and a command that ignores Ctrl-C cannot show what Ctrl-C does
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    if max_file_size is not None:
        import resource

        signal.signal(
            signal.SIGXFSZ, signal.SIG_IGN
        )  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))
    from lemon.sweep.local import call_main

    sys.exit(call_main(argv, module))


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        PRELOAD
    )  # no effect once the forkserver runs (another test started it)
    return ctx


def start_cli(
    module: str, argv: list[str], logs: Path, max_file_size: int | None = None
) -> multiprocessing.Process:
    """Start ``python -m module argv`` as a child process; its output goes to ``logs``/{out,err}.txt."""
    logs.mkdir(parents=True, exist_ok=True)
    proc = _context().Process(
        target=_child,
        args=(
            module,
            [str(a) for a in argv],
            str(logs / "out.txt"),
            str(logs / "err.txt"),
            max_file_size,
        ),
    )
    proc.start()
    return proc


def finish(proc: multiprocessing.Process, logs: Path, timeout: float = 300) -> Outcome:
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError(f"command did not finish in {timeout} s")
    return Outcome(proc.exitcode, (logs / "out.txt").read_text(), (logs / "err.txt").read_text())


def run_cli(module: str, argv: list[str], logs: Path, max_file_size: int | None = None) -> Outcome:
    """Run ``python -m module argv`` in its own process; returns how it ended."""
    return finish(start_cli(module, argv, logs, max_file_size), logs)


def wait_for(predicate, timeout: float = 120.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------ mount namespaces
def tmpfs_available() -> bool:
    """Whether this user may mount a tmpfs in a private mount namespace (``unshare -r -m``)."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt || exit 1"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def in_tmpfs(
    mount: Path,
    size_kib: int,
    prepare: Path | None,
    module: str,
    argv: list[str],
    copy_back: Path,
    read_only: bool = False,
    into: str = "out",
) -> Outcome:
    """Mount a ``size_kib`` tmpfs at ``mount`` in a private namespace, copy the folder ``prepare`` to
    ``mount/<into>`` (``into=""``: onto the mount point itself), make it read-only if asked, run
    ``python -m module argv``, and copy the tmpfs back to ``copy_back``."""
    mount.mkdir(parents=True, exist_ok=True)
    copy_back.mkdir(parents=True, exist_ok=True)
    steps = [f"mount -t tmpfs -o size={size_kib}k tmpfs {shlex.quote(str(mount))} || exit 99"]
    if prepare is not None and prepare.exists():
        target = shlex.quote(str(mount / into if into else mount))
        steps.append(f"mkdir -p {target} && cp -a {shlex.quote(str(prepare))}/. {target}/")
    if read_only:
        steps.append(f"mount -o remount,ro {shlex.quote(str(mount))} || exit 99")
    command = shlex.join([sys.executable, "-m", module, *map(str, argv)])
    steps += [
        f"{command}; rc=$?",
        f"cp -a {shlex.quote(str(mount))}/. {shlex.quote(str(copy_back))}/",
        "exit $rc",
    ]
    done = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", "\n".join(steps)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def bind_mount_available() -> bool:
    """Whether this user may bind-mount a folder in a private mount namespace (``unshare -r -m``)."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", "mount --bind /tmp /mnt || exit 1"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def in_bind_mount(source: Path, target: Path, module: str, argv: list[str]) -> Outcome:
    """Bind-mount the folder ``source`` onto ``target`` (a folder of the same file system) in a private
    namespace and run ``python -m module argv`` there: what a run sees when --output_dir is a bind
    mount (a container volume, a ``mount --bind``); the files land in ``source``."""
    command = shlex.join([sys.executable, "-m", module, *map(str, argv)])
    script = (
        f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))} || exit 99\n{command}"
    )
    done = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
        check=False,
    )
    assert done.returncode != 99, f"bind mount failed: {done.stderr}"
    return Outcome(done.returncode, done.stdout, done.stderr)


# ----------------------------------------------------------------------------------------- snapshots
def snapshot(root: Path) -> dict[str, object]:
    """Every entry below ``root``: file bytes, symlink targets, folders (mtimes ignored)."""
    found: dict[str, object] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = ("symlink", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir",)
        else:
            found[rel] = path.read_bytes()
    return found


def lemon_residue(root: Path) -> list[str]:
    """Locks, staging folders and temp files of runs anywhere below ``root``."""
    from lemon.core.io import is_temp_file

    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if ".lemon-stage-" in p.name
        or ".lemon-old-" in p.name
        or p.name.endswith(".lemon.lock")
        or p.name == ".lemon.lock"
        or is_temp_file(p.name)
    )
