"""Project exceptions: every user-facing failure is one of these, with a one-line message that says what
is wrong, the offending value, what is allowed, and how to fix it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable


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


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """A command's ``main``: a :class:`LemonError` ends it with its one-line message on stderr and exit
    code 2, never a traceback; Ctrl-C, SIGTERM and SIGHUP end it with one line too (exit code 128 + the
    signal, as a shell reports it; :mod:`lemon.core.startup`)."""

    @functools.wraps(main)
    def command(*args, **kwargs) -> int:
        from lemon.core.startup import interrupt_message, interrupts_as_errors

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
