"""A run's log.txt: every record and warning of the run, one line each, written in its staging folder."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("lemon")


class RunLog(logging.FileHandler):
    """log.txt of a run: a failed write (e.g. a full disk) is kept to fail the run, not printed."""

    error: OSError | None = None

    def handleError(self, record: logging.LogRecord) -> None:
        failure = sys.exc_info()[1]
        if isinstance(failure, OSError) and self.error is None:
            self.error = failure
        elif not isinstance(failure, OSError):
            super().handleError(record)


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Route warnings raised during a run into the run's log (and the console) as one line each."""
    log.warning("%s: %s", category.__name__, message)


@contextmanager
def run_log(folder: Path, debug: bool) -> Iterator[RunLog]:
    """Log into ``folder``/log.txt (and route warnings there) while the block runs; a failed write of the
    log is raised once the block has finished, so a run with an incomplete log is never committed."""
    handler = RunLog(folder / "log.txt", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            # torch on read-only memory-mapped embeddings: they are only ever read
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            warnings.showwarning = _log_warning
            yield handler
    finally:
        log.removeHandler(handler)
        handler.close()
    if handler.error is not None:  # log.txt is incomplete: the run is not finished
        raise handler.error
