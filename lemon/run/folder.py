"""The life cycle of a run's output folder: checked first, locked while the run works, written beside it
and swapped in only when the run has finished.

A run never writes into ``--output_dir`` while it works. :func:`claim`

1. checks the folder without touching it: not a file or below one, writable, and empty or holding a lemon
   run (a finished run is replaced only with ``--overwrite``; a folder holding anything else is refused);
2. takes an exclusive lock beside it (``.<name>.lemon.lock``, :mod:`lemon.core.lock`, holding the holder's
   pid, host and start time): a second run fails at once naming the holder; the lock of a killed run is
   taken over, since the kernel releases an ``flock`` when its process dies;
3. removes what killed runs left: their staging folders and the hidden temp files of interrupted writes;
4. gives the run a staging folder beside it (``.<name>.lemon-stage-<pid>-<hex>``) to write every output
   into, ``done`` last;
5. on :meth:`Stage.commit`, swaps the staging folder in with one atomic rename exchange (Linux; elsewhere
   two renames) and deletes the old folder: readers see the previous run or the new one, never a mix, and
   no file of the previous run survives. A failed run leaves the folder as it was.

Where the parent folder cannot be written, or the output folder is a mount point, the lock and the staging
folder live inside the output folder, and the commit moves the files in: ``done`` removed first, written
last. The files a sweep launcher writes for the run (``job_id``, ``job_output.txt``) are kept.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lemon.core import io
from lemon.core.errors import OutputDirError, RunExistsError, StorageError
from lemon.core.lock import RunLock, describe_holder

log = logging.getLogger(__name__)
ARGS = "args.json"
#: what a sweep launcher writes into a run folder for the run it starts (kept by that run)
LAUNCHER_FILES = ("job_id", "job_output.txt")
INSIDE_LOCK = ".lemon.lock"
_SIBLING = re.compile(r"^\.(?P<name>.+)\.lemon-(?:stage|old)-\d+-[0-9a-f]{6}$")
_INSIDE = re.compile(r"^\.lemon-stage-\d+-[0-9a-f]{6}$")
_JOB_ID = re.compile(r"^(local:.+:\d+:\S+|\d+(_\d+)?)$")
_NO_SPACE = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large"}
if hasattr(errno, "EDQUOT"):
    _NO_SPACE[errno.EDQUOT] = "disk quota exceeded"
_NO_WRITE = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


# ------------------------------------------------------------------------------------------ inspection
def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``Path.exists`` is False below a file)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _is_run_args(path: Path) -> bool:
    """Whether ``path`` is the args.json of a run_lemon run (a JSON object with its resolved config)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and {"resolved", "environment"} <= obj.keys()


def _is_launcher_record(path: Path) -> bool:
    """Whether ``path`` is a ``job_id`` a sweep launcher wrote (Slurm id or ``local:host:pid:start``)."""
    try:
        first = path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, ValueError, IndexError):
        return False
    return bool(_JOB_ID.match(first))


def _own_leftover(name: str) -> bool:
    """Temp files of interrupted writes, and the lock and staging folders of the inside layout."""
    return io.is_temp_file(name) or name == INSIDE_LOCK or bool(_INSIDE.match(name))


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def inspect_output_dir(out: Path, overwrite: bool, shown: Path | None = None) -> str:
    """What ``out`` holds: 'new' (absent or empty), 'incomplete' (a lemon run without ``done``, or only a
    launcher's ``job_id``) or 'finished'. Raises a one-line error when no run may write there.

    Reads only; the rules: not a file or below one; a finished run needs ``overwrite``; a non-empty folder
    must hold a lemon run (its args.json) or a sweep launcher's job record, else it is someone else's.
    Messages name ``shown`` (the path as given) when given.
    """
    name = shown or out
    if not os.path.lexists(out):
        existing = _nearest_existing(out)
        if not existing.is_dir():
            raise OutputDirError(
                f"--output_dir {name} is below {existing}, which is a file, not a folder; choose "
                "a folder path (it is created if missing)."
            )
        return "new"
    if not out.is_dir():
        raise OutputDirError(
            f"--output_dir {name} is a file, not a folder; choose a folder path (it is created "
            "if missing)."
        )
    try:
        names = os.listdir(out)
    except OSError as err:
        raise OutputDirError(
            f"--output_dir {name} cannot be read ({err.strerror}); choose another folder."
        ) from None
    content = [n for n in names if not _own_leftover(n)]
    if not content:
        return "new"
    run_args = _is_run_args(out / ARGS)
    if not run_args and not _is_launcher_record(out / LAUNCHER_FILES[0]):
        raise OutputDirError(
            f"--output_dir {name} holds files that are not a lemon run ({_listing(content)}); "
            "a run never writes into such a folder: choose a new or empty folder."
        )
    if run_args and (out / io.DONE).is_file():
        if not overwrite:
            raise RunExistsError(
                f"{name} already holds a finished run (it has a 'done' marker); pass "
                "--overwrite to replace it or choose another --output_dir."
            )
        return "finished"
    return "incomplete"


def _write_problem(path: Path) -> str | None:
    """Why ``path`` (an existing folder) cannot be written to, or None when it can."""
    if os.access(path, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):
        pass
    return "permission denied"


def _mount_points() -> set[str]:
    """Every mount point of this process's mount namespace (Linux: /proc/self/mountinfo, whose 5th field
    escapes spaces and other bytes as octal)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return set()
    points = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            points.add(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
    return points


def is_mount_point(path: Path) -> bool:
    """Whether ``path`` is a mount point, bind mounts of a folder of the same file system included
    (``os.path.ismount`` compares devices, so it misses those; renaming one fails with EBUSY)."""
    return os.path.ismount(path) or os.path.realpath(path) in _mount_points()


@dataclass(frozen=True)
class Layout:
    """Where a run into ``out`` keeps its lock and its staging folder: beside ``out`` or inside it.

    The lock is beside ``out`` whenever the parent folder is writable (so every run into ``out`` takes the
    same lock); the staging folder is inside only where a swap cannot be done (see :func:`choose_layout`).
    """

    out: Path
    inside: bool
    lock_inside: bool = False

    @property
    def lock(self) -> Path:
        if self.lock_inside:
            return self.out / INSIDE_LOCK
        return self.out.parent / f".{self.out.name}.lemon.lock"

    def stage_name(self, kind: str = "stage") -> str:
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        return f".lemon-{kind}-{tag}" if self.inside else f".{self.out.name}.lemon-{kind}-{tag}"

    @property
    def stage_parent(self) -> Path:
        return self.out if self.inside else self.out.parent


def choose_layout(out: Path, shown: Path) -> Layout:
    """Stage beside ``out`` and swap when its parent is writable and ``out`` is neither a mount point nor
    the current folder (or one of its parents); else stage inside ``out`` and move the files in."""
    if not out.exists():
        existing = _nearest_existing(out)
        problem = _write_problem(existing)
        if problem:
            raise OutputDirError(
                f"--output_dir {shown} cannot be created: {existing} is not writable ({problem}); "
                "choose another --output_dir."
            )
        return Layout(out, inside=False)
    parent_writable = not _write_problem(out.parent)
    # a swap would leave this process (and the shell that started it) in the deleted old folder
    inside_cwd = Path(os.path.realpath(os.getcwd())).is_relative_to(out)
    if parent_writable and not is_mount_point(out) and not inside_cwd:
        return Layout(out, inside=False)
    problem = _write_problem(out)
    if problem:
        raise OutputDirError(
            f"--output_dir {shown} is not writable ({problem}); choose another --output_dir."
        )
    return Layout(out, inside=True, lock_inside=not parent_writable)


# ------------------------------------------------------------------------------------ stage and commit
def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); OSError where unsupported."""
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "renameat2 is Linux only")
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        raise OSError(errno.ENOSYS, "this C library has no renameat2")
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def staging_dirs(out: str | os.PathLike) -> list[Path]:
    """The staging folders of runs into ``out`` (the running one's, or those killed runs left)."""
    out = Path(os.path.realpath(out))
    found = []
    with contextlib.suppress(OSError):
        found += [
            out.parent / n
            for n in os.listdir(out.parent)
            if (m := _SIBLING.match(n)) and m["name"] == out.name and ".lemon-stage-" in n
        ]
    with contextlib.suppress(OSError):
        found += [out / n for n in os.listdir(out) if _INSIDE.match(n)]
    return sorted(found)


def remove_leftovers(layout: Layout) -> list[str]:
    """Delete staging folders and temp files that killed runs left for this folder (call under its lock)."""
    out, removed = layout.out, []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(out.parent):
            match = _SIBLING.match(name)
            if match and match["name"] == out.name:
                _remove(out.parent / name)
                removed.append(name)
    if out.is_dir():
        for name in os.listdir(out):
            if _INSIDE.match(name) or io.is_temp_file(name):
                _remove(out / name)
                removed.append(name)
    return removed


@dataclass
class Stage:
    """The folder a run writes its outputs into; :meth:`commit` makes them the output folder's content."""

    path: Path
    layout: Layout
    state: str  # what the output folder held: 'new', 'incomplete' or 'finished'
    notes: list[str] = field(default_factory=list)
    committing: bool = False
    committed: bool = False

    def commit(self) -> None:
        """Replace the output folder by the staging folder (its outputs complete, ``done`` last); Ctrl-C
        or SIGTERM meanwhile takes effect once it is done (:func:`lemon.core.startup.deferred_interrupts`)."""
        from lemon.core.startup import deferred_interrupts

        with deferred_interrupts():
            self._commit()

    def _commit(self) -> None:
        out, stage = self.layout.out, self.path
        self.committing = True
        keep = LAUNCHER_FILES if self.state != "finished" else ()
        if self.layout.inside:
            _move_in(stage, out, keep)
        elif not os.path.lexists(out):
            os.rename(stage, out)
        elif is_mount_point(out):  # became one after the layout was chosen: copy the files in
            _copy_in(stage, out, keep)
            shutil.rmtree(stage, ignore_errors=True)
        else:
            for name in keep:  # a hard link keeps job_output.txt the file its job writes to
                source = out / name
                if source.is_file():
                    try:
                        os.link(source, stage / name)
                    except OSError:
                        shutil.copy2(source, stage / name)
            with contextlib.suppress(OSError):
                os.chmod(stage, stat.S_IMODE(os.stat(out).st_mode))
            try:
                _exchange(stage, out)
                old = stage
            except OSError as err:
                if err.errno in (errno.EBUSY, errno.EXDEV):  # a mount point we could not see
                    _copy_in(stage, out, keep)
                    old = stage
                else:
                    old = out.parent / self.layout.stage_name("old")
                    os.rename(out, old)
                    os.rename(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(out.parent)
        self.committed = True


def _move_in(stage: Path, out: Path, keep: tuple[str, ...]) -> None:
    """Inside layout: empty ``out`` (``done`` first) but for ``keep``, the lock and the stage; move in."""
    (out / io.DONE).unlink(missing_ok=True)  # from here on the folder reads as incomplete
    for name in os.listdir(out):
        if name not in keep and name not in (INSIDE_LOCK, stage.name):
            _remove(out / name)
    for name in sorted(os.listdir(stage), key=lambda n: n == io.DONE):  # done last
        os.replace(stage / name, out / name)
    os.rmdir(stage)


def _copy_in(stage: Path, out: Path, keep: tuple[str, ...]) -> None:
    """A mount point found only at commit (the staging folder is on the other side of it): empty ``out``
    (``done`` first) but for ``keep`` and copy the outputs in, ``done`` last."""
    (out / io.DONE).unlink(missing_ok=True)
    for name in os.listdir(out):
        if name not in keep and name != INSIDE_LOCK:
            _remove(out / name)
    for name in sorted(os.listdir(stage), key=lambda n: n == io.DONE):
        source = stage / name
        if source.is_dir():
            shutil.copytree(source, out / name)
        else:
            shutil.copy2(source, out / name)


def _make_parents(path: Path) -> list[Path]:
    """Create the missing folders up to ``path`` (included); returns them, outermost first."""
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)][::-1]
    for p in missing:
        p.mkdir()
    return missing


def storage_error(err: OSError, shown: Path, unchanged: bool) -> StorageError | None:
    """A one-line error for a write that failed for lack of space or permission; None for other errors."""
    what = _NO_SPACE.get(err.errno) or _NO_WRITE.get(err.errno)  # type: ignore[arg-type]
    if what is None:
        return None
    where = err.filename or shown
    fix = (
        "free space there or choose another --output_dir / --cache_dir"
        if err.errno in _NO_SPACE
        else "choose a writable --output_dir / --cache_dir"
    )
    kept = f"; {shown} is unchanged" if unchanged else ""
    error = StorageError(f"Cannot write {where}: {what}; {fix}{kept}.")
    error.errno = err.errno
    return error


@contextlib.contextmanager
def claim(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Stage]:
    """Check, lock and stage ``out`` for one run (see the module docstring); yields the :class:`Stage`.

    The body writes into ``stage.path`` and calls ``stage.commit()`` when every output is written. On any
    failure the staging folder is removed and ``out`` is left as it was; lack of space or permission
    becomes a one-line :class:`~lemon.core.errors.StorageError`.
    """
    shown = Path(out)
    real = Path(os.path.realpath(shown))
    stage: Stage | None = None
    created: list[Path] = []
    lock: RunLock | None = None
    try:
        inspect_output_dir(real, overwrite, shown)
        layout = choose_layout(real, shown)
        created = _make_parents(real.parent)
        lock = RunLock(layout.lock, shown).acquire()
        state = inspect_output_dir(
            real, overwrite, shown
        )  # again, now that no other run can change it
        notes = []
        if lock.recovered:
            note = (
                "took over the lock of a run that ended without releasing it "
                f"({describe_holder(lock.recovered)})"
            )
            log.warning("%s: %s", shown, note)
            notes.append(note)
        removed = remove_leftovers(layout)
        if removed:
            notes.append(f"removed what an interrupted run left: {_listing(removed)}")
        if state != "new":
            notes.append(f"replacing the {state} run in {shown} when this one finishes")
        path = layout.stage_parent / layout.stage_name()
        path.mkdir()
        stage = Stage(path, layout, state, notes)
        lock.write(path)
        yield stage
    except OSError as err:
        if isinstance(err, StorageError):
            raise
        converted = storage_error(err, shown, unchanged=not (stage and stage.committing))
        if converted is None:
            raise
        raise converted from err
    finally:
        if stage is not None and not stage.committed:
            shutil.rmtree(stage.path, ignore_errors=True)
        if lock is not None:
            lock.release()
        if not (stage and stage.committed):
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
