"""Project exceptions: every user-facing failure is one of these, with a one-line message that says what
is wrong, the offending value, what is allowed, and how to fix it; and :func:`one_line_errors`, which ends
a command on one of them, or on Ctrl-C, SIGTERM or SIGHUP, with one line instead of a traceback."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator


class LemonError(ValueError):
    """Bad input or configuration (a ValueError, so callers can catch it generically)."""


class UnknownNameError(LemonError):
    """A name that is not in a registry; the message lists the valid names."""


class DatasetNotFoundError(LemonError, FileNotFoundError):
    """A dataset's files are missing; the message names the path and the DataSources.md section."""


class ModelNotFoundError(LemonError, FileNotFoundError):
    """Model weights are not available locally and cannot be downloaded."""


class RunExistsError(LemonError, FileExistsError):
    """The output directory already holds a finished run."""


class MissingDependencyError(LemonError, ImportError):
    """An optional dependency is not installed; the message gives the install command."""


class OutputDirError(LemonError):
    """--output_dir cannot hold this run: a file, below a file, not writable, or someone else's folder."""


class RunLockedError(LemonError):
    """Another run holds the output folder's lock; the message names it (pid, host, start time)."""


class StorageError(LemonError, OSError):
    """Writing failed for lack of space or permission (ENOSPC, EROFS, ...); the message names the path."""


#: the signals a command ends on with one line (exit status 128 + the signal number, as a shell shows)
INTERRUPTS: dict[int, str] = {
    signal.SIGINT: "Ctrl-C (SIGINT)",
    signal.SIGTERM: "SIGTERM",
    **({signal.SIGHUP: "SIGHUP (the terminal closed)"} if hasattr(signal, "SIGHUP") else {}),
}


class Interrupted(KeyboardInterrupt):
    """The command was stopped by a signal (a KeyboardInterrupt, so code that cleans up on Ctrl-C cleans
    up on SIGTERM and SIGHUP alike)."""

    def __init__(self, signum: int) -> None:
        super().__init__(INTERRUPTS.get(signum, f"signal {signum}"))
        self.signum = signum


def _raise(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupts_as_errors() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Interrupted` like Ctrl-C does (so ``finally`` blocks remove a
    run's staging folder and release its lock), for the duration; the previous handlers come back after.
    Only the main thread may set handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {}
    for signum in INTERRUPTS:
        if signum == signal.SIGINT:
            continue  # Python raises KeyboardInterrupt already
        with contextlib.suppress(ValueError, OSError):
            saved[signum] = signal.signal(signum, _raise)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)


def interrupt_message(err: KeyboardInterrupt) -> tuple[str, int]:
    """(the one line, the exit status) of a command stopped by ``err``."""
    signum = getattr(err, "signum", signal.SIGINT)
    what = INTERRUPTS.get(signum, f"signal {signum}")
    return (
        f"interrupted by {what}; what had not finished was not written (a run swaps its results "
        "into its output folder only when it has finished; finished runs and cached embeddings are "
        "kept): run the same command again to go on.",
        128 + int(signum),
    )


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """A command's ``main``: a :class:`LemonError` ends it with its one-line message on stderr and exit
    code 2, never a traceback; Ctrl-C, SIGTERM and SIGHUP end it with one line too (exit code 128 + the
    signal, as a shell reports it; :mod:`lemon.core.startup`)."""

    @functools.wraps(main)
    def command(*args, **kwargs) -> int:
        try:
            with interrupts_as_errors():
                return main(*args, **kwargs)
        except LemonError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as err:
            message, code = interrupt_message(err)
            print(f"error: {message}", file=sys.stderr)
            return code

    return command
