"""The start-up of every command: logging to stderr and one-line errors, in one decorator.

Usage::

    @command(lemon=logging.INFO)
    def main(argv: Sequence[str] | None = None) -> int:
        ...

Every entry point (``run_lemon``, ``sweep.py``, ``train_clip_from_scratch.py``, ``python -m lemon.<x>``)
starts the same way, so its messages look alike and a :class:`~lemon.core.errors.LemonError` ends it with
one line on stderr and exit code 2 (:func:`~lemon.core.errors.one_line_errors`), never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from lemon.core.errors import one_line_errors

#: how a command's log records read on stderr
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.WARNING, lemon: int | None = None) -> None:
    """Log records of ``level`` and above to stderr (``logging.basicConfig``: a no-op where the process
    has configured logging already); ``lemon``: the level of lemon's own loggers (e.g. INFO to show
    progress while other libraries stay at ``level``)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if lemon is not None:
        logging.getLogger("lemon").setLevel(lemon)


def command(
    level: int = logging.WARNING, lemon: int | None = None
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorator of a command's ``main``: :func:`setup_logging` (``level``, ``lemon``) before it runs,
    and :func:`~lemon.core.errors.one_line_errors` around it."""

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def started(*args: Any, **kwargs: Any) -> int:
            setup_logging(level, lemon)
            return main(*args, **kwargs)

        return one_line_errors(started)

    return decorate
