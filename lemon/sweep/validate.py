"""Check a sweep job's flags exactly as its script would at start, without running it."""

from __future__ import annotations

import importlib

from lemon.core.errors import LemonError
from lemon.sweep.jobs import Job


def check_job(job: Job) -> str | None:
    """Why ``job`` would fail at start (one line), or None when its flags are valid.

    The job's script (``run_lemon``, ``train_clip_from_scratch``, ...) checks its own flags through its
    ``check(argv)``; a script without one is not checked.
    """
    module = importlib.import_module(job.script)
    check = getattr(module, "check", None)
    if check is None:
        return None
    try:
        check(job.argv())
    except LemonError as err:
        return str(err)
    return None
