"""Processes named across machines and restarts: ``local:<host>:<pid>:<start>`` ids, and whether the
process one names still runs (a run's lock holder, a sweep's local job)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

LOCAL_PREFIX = "local:"


def local_job_id(pid: int) -> str:
    """``local:<host>:<pid>:<start>``; the start time tells a live job from a recycled pid."""
    return f"{LOCAL_PREFIX}{socket.gethostname()}:{pid}:{_start_time(pid)}"


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state first); [] where there is no /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> str:
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else "?"  # field 22 of stat: start time in clock ticks


def local_job_alive(job_id: str) -> bool:
    """Whether a ``local:`` id names a process that still runs on this host (zombies count as ended)."""
    try:
        host, pid, start = job_id[len(LOCAL_PREFIX) :].rsplit(":", 2)
        pid_int = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid_int, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid_int)
    if not fields:
        return True  # no /proc (macOS): the pid exists, trust it
    return fields[0] != "Z" and start in (fields[19], "?")
