"""What a command does at start and around its commit: check that torch and torchvision match (before
any work: ``run_lemon`` calls :func:`check_torch` before it imports the pipeline), and keep a commit from
being cut in half by Ctrl-C, SIGTERM or SIGHUP (:func:`deferred_interrupts`). Ending a command on those
signals in one line is :func:`lemon.core.errors.one_line_errors`'s part.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator

from lemon.core.errors import INTERRUPTS, Interrupted, LemonError

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


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
    as README.md's no-GPU note)."""
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
