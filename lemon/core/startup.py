"""What every command does at start and at an interrupt: check that torch and torchvision match (before
any work), turn Ctrl-C, SIGTERM and SIGHUP into one line instead of a traceback, and keep a commit from
being cut in half by one.

:func:`lemon.core.errors.one_line_errors` (the wrapper of every entry point's ``main``) runs the command
under :func:`interrupts_as_errors`; ``run_lemon`` calls :func:`check_torch` before it imports the
pipeline.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator

from lemon.core.errors import LemonError

#: the signals a command ends on with one line (exit status 128 + the signal number, as a shell shows)
INTERRUPTS = {
    signal.SIGINT: "Ctrl-C (SIGINT)",
    signal.SIGTERM: "SIGTERM",
    **({signal.SIGHUP: "SIGHUP (the terminal closed)"} if hasattr(signal, "SIGHUP") else {}),
}
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


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


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while the block runs (a commit: a few renames) and act on them
    right after it: the output folder is then the old run or the new one, never half of each."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    saved = {}
    for signum in INTERRUPTS:
        with contextlib.suppress(ValueError, OSError):
            saved[signum] = signal.signal(signum, lambda s, f: pending.append(s))
    try:
        yield
    finally:
        for signum, handler in saved.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
    if pending:
        raise Interrupted(pending[0])


# ------------------------------------------------------------------------------------ torch/torchvision
def _release(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision release built for a torch release (torch 2.m.p <-> torchvision 0.(m+15).p, the
    pairing PyTorch has kept since torch 2.0); None for versions outside that rule."""
    match = re.match(r"2\.(\d+)\.(\d+)", torch_version)
    return f"0.{int(match[1]) + 15}.{match[2]}" if match else None


def install_command(torch_version: str) -> str:
    """The pip command that installs ``torch_version`` with its torchvision (CPU index for +cpu builds,
    as README.md's no-GPU install)."""
    base = torch_version.split("+")[0]
    vision = matching_torchvision(base)
    pair = f"torch=={base}" + (f" torchvision=={vision}" if vision else " torchvision")
    return f"pip install {pair}" + (f" --index-url {CPU_INDEX}" if "+cpu" in torch_version else "")


def check_torch(import_torchvision: bool = True) -> None:
    """Stop in one line when torch and torchvision do not belong together, before any work: their
    release numbers do not pair, or importing torchvision fails (a CUDA torchvision beside a CPU-only
    torch: 'operator torchvision::nms does not exist'). Nothing to check without torchvision."""
    from importlib import metadata

    try:
        torch_version = metadata.version("torch")
        vision_version = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return
    expected = matching_torchvision(torch_version.split("+")[0])
    problem = None
    if expected and _release(expected) != _release(vision_version):
        problem = (
            f"torchvision {vision_version} is not the release for torch {torch_version} "
            f"({expected} is)"
        )
    elif import_torchvision:
        try:
            import torchvision  # noqa: F401
        except (
            Exception
        ) as err:  # what a mismatched build raises varies: RuntimeError, ImportError, OSError
            reason = " ".join(str(err).split())[:160]
            problem = (
                f"importing torchvision {vision_version} with torch {torch_version} fails "
                f"({type(err).__name__}: {reason}): they are builds for different torch versions or "
                "devices"
            )
    if problem:
        raise LemonError(
            f"torch and torchvision do not match: {problem}; install a matching pair from one "
            f"index: {install_command(torch_version)}"
        )
