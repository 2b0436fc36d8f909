"""The exclusive lock of a run's output folder (see :mod:`lemon.run.folder`), naming its holder.

A lock file (JSON: the holder's pid, host, start time, command line and staging folder) held under
``flock``. The kernel releases an ``flock`` when its process dies, and a holder removes the file when it
lets go, so a file found with content but no ``flock`` was left by a run that died: it is taken over. Where
``flock`` is not supported (some network file systems) the file is created exclusively instead, and a
lock whose holder no longer runs on this host is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lemon.core.errors import RunLockedError


def _holder_info(started: str, stage: Path | None = None) -> dict[str, Any]:
    from lemon.core.processes import local_job_id

    return {
        "id": local_job_id(os.getpid()),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": started,
        "argv": sys.argv,
        "stage": None if stage is None else str(stage),
    }


def _parse_holder(raw: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _read_holder(fd: int, wait_s: float = 1.0) -> dict[str, Any]:
    """The holder recorded in a locked file. A run writes itself in right after taking the lock (and
    rewrites itself when it names its staging folder), so an empty or half-written record is read again
    for up to ``wait_s`` seconds before the holder is reported as unknown."""
    deadline = time.monotonic() + wait_s
    while True:
        holder = _parse_holder(os.pread(fd, 65536, 0))
        if holder.get("pid") or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 123 on host, started 2026-01-02T03:04:05+0000`` (or 'an unknown process')."""
    if not holder.get("pid"):
        return "an unknown process"
    return f"pid {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"


class RunLock:
    """Exclusive lock of the output folder ``out`` through the lock file ``path``.

    ``what`` names the locked thing in the message a second run gets (default: ``--output_dir <out>``);
    ``fix`` says what that run can do instead of waiting.
    """

    def __init__(
        self,
        path: Path,
        out: Path,
        what: str | None = None,
        fix: str = "choose another --output_dir",
        holder: str = "another run",
    ) -> None:
        self.path, self.out = path, out
        self.what, self.fix, self.holder = what or f"--output_dir {out}", fix, holder
        self.fd: int | None = None
        self.recovered: dict[str, Any] = {}
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows
            return self._acquire_exclusive()
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise self._locked(holder) from None
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    return self._acquire_exclusive()
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                # its previous holder removed it between our open and flock: take the new one
                os.close(fd)
                continue
            self.recovered = _parse_holder(os.pread(fd, 65536, 0))
            self.fd = fd
            self.write()
            return self
        raise RunLockedError(f"{self.what}: could not take the lock {self.path}; try again.")

    def _acquire_exclusive(self) -> RunLock:
        from lemon.core.processes import local_job_alive

        for _ in range(3):
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    holder = _parse_holder(self.path.read_bytes())
                except FileNotFoundError:
                    continue
                dead = holder.get("host") == socket.gethostname() and not local_job_alive(
                    str(holder.get("id", ""))
                )
                if not dead:
                    raise self._locked(holder, exclusive=True) from None
                self.recovered = holder
                self.path.unlink(missing_ok=True)
                continue
            self.write()
            return self
        raise RunLockedError(f"{self.what}: could not take the lock {self.path}; try again.")

    def _locked(self, holder: dict[str, Any], exclusive: bool = False) -> RunLockedError:
        stage = f"; it writes to {holder['stage']} until it finishes" if holder.get("stage") else ""
        stale = f" (if it no longer runs, delete {self.path})" if exclusive else ""
        return RunLockedError(
            f"{self.what} is in use by {self.holder}: {describe_holder(holder)}{stage}; "
            f"wait for it to finish or {self.fix}{stale}."
        )

    def write(self, stage: Path | None = None) -> None:
        """Record this process (and its staging folder) as the holder."""
        assert self.fd is not None, "write() needs the lock"
        data = json.dumps(_holder_info(self.started, stage)).encode()
        os.pwrite(self.fd, data, 0)  # over the old record, then cut its tail: never an empty file
        os.ftruncate(self.fd, len(data))

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # before unlocking: a waiting run then sees a fresh file
        os.close(self.fd)
        self.fd = None
