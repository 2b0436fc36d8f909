"""Where data and caches live: explicit flag > environment variable > per-user cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lemon"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Dataset root: ``--data_dir`` > ``$LEMON_DATA_DIR`` > ``~/.cache/lemon/data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("LEMON_DATA_DIR"):
        return Path(os.environ["LEMON_DATA_DIR"]).expanduser()
    return _user_cache() / "data"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Embedding/model cache root: ``--cache_dir`` > ``$LEMON_CACHE_DIR`` > ``~/.cache/lemon/cache``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("LEMON_CACHE_DIR"):
        return Path(os.environ["LEMON_CACHE_DIR"]).expanduser()
    return _user_cache() / "cache"


def quote_path(path: object) -> str:
    """A path (or any file name a user gave) in single quotes for a one-line message, so that a leading or
    trailing space or a backslash is visible; control characters (a newline, a tab) are escaped, never
    printed, so the message stays one line."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if any(not ch.isprintable() for ch in text):
        text = text.encode("unicode_escape").decode("ascii")
    return "'" + text.replace("'", "\\'") + "'"
