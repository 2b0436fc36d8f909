"""Loading from the Hugging Face Hub without hangs: probe once, go offline when unreachable, fail in one line.

Without network, ``from_pretrained`` retries for minutes before failing. :func:`hub_session` probes the hub
(a TCP connect with a short timeout, run in a daemon thread so a stuck DNS lookup cannot block us) and,
when it is unreachable or ``HF_HUB_OFFLINE`` is set, switches huggingface_hub into offline mode for the
duration of the load: cached files still load, missing ones fail at once. :func:`missing_model` turns the
failure into a one-line :class:`ModelNotFoundError` that says which weights are needed and how to point
``--clip_model`` at a local copy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlparse

from lemon.core.errors import ModelNotFoundError

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}


def offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set in the environment (read at call time)."""
    return any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.lru_cache(maxsize=4)
def _probe(host: str, port: int, timeout: float) -> bool:
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when offline mode is not requested and the hub endpoint accepts a TCP connection in time."""
    if offline_requested():
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    return _probe(
        url.hostname or "huggingface.co",
        url.port or (443 if url.scheme == "https" else 80),
        timeout,
    )


@contextlib.contextmanager
def hub_session() -> Iterator[bool]:
    """Yield whether the hub is reachable; while not, huggingface_hub runs in offline mode (cache only)."""
    online = hub_reachable()
    if online:
        yield True
        return
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield False
    finally:
        constants.HF_HUB_OFFLINE = saved


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception as a short single line (library messages span several)."""
    text = " ".join(str(err).split())
    return (text[:limit] + "...") if len(text) > limit else text


OFFLINE_MODELS = (
    "offline, --clip_model demo_clip (the demo's model) or a CLIP trained from scratch on your data "
    "(python train_clip_from_scratch.py ... --output_dir DIR, then --clip_model DIR) work without network"
)


def missing_model(
    model: str,
    weights: str,
    online: bool,
    err: BaseException | None = None,
    flag: str = "--clip_model",
) -> ModelNotFoundError:
    """The one-line error for weights that could not be loaded: which weights, where to put a local copy
    (``flag``: ``--clip_model`` for embedders, a scorer's own model flag for the model-based scorers), and,
    for embedders, which models need no network."""
    where = (
        "could not be downloaded"
        if online
        else "are not in the local Hugging Face cache and the Hub cannot be reached (offline)"
    )
    cause = "" if err is None else f" ({type(err).__name__}: {one_line(err)})"
    offline = f"; {OFFLINE_MODELS}" if flag == "--clip_model" else ""
    return ModelNotFoundError(
        f"Model '{model}' needs the weights {weights}, which {where}: download them once on a machine with "
        f"network (cache: $HF_HOME, default ~/.cache/huggingface) or save them to a folder and pass "
        f"{flag} /path/to/that/folder{offline}.{cause}"
    )


def require_weights(model: str, repo: str, filename: str) -> None:
    """Raise :func:`missing_model` at once when ``repo`` is neither in the local Hugging Face cache (its
    ``filename``) nor reachable: a run fails before reading any data instead of after embedding setup."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, filename), str) or hub_reachable():
        return
    raise missing_model(model, f"of the Hugging Face repository '{repo}'", online=False)
