"""The training record a from-scratch checkpoint keeps beside its weights (``train_info.json``).

It holds the training configuration, the loss per epoch and the content ids of the images trained on
(``train_identities``, 16-digit hex: exact in JSON), so a run can tell which pairs its model has seen. A
``--folds K`` training keeps K checkpoints in ``fold_<f>`` sub-folders and, in its own record, ``folds`` and
the images each fold held out (``held_out``). Written by :mod:`lemon.train.run`, read by
:mod:`lemon.embed.folds`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_INFO = "train_info.json"


def fold_dir(folder: Path | str, fold: int) -> Path:
    """Where fold model ``fold`` of a ``--folds`` training lives."""
    return Path(folder) / f"fold_{fold}"


def hex_ids(identity: np.ndarray) -> list[str]:
    """Content ids as 16-digit hex strings, sorted and distinct."""
    return [f"{int(v):016x}" for v in np.unique(np.asarray(identity, dtype=np.uint64))]


def parse_ids(values: list[str]) -> np.ndarray:
    """Sorted uint64 content ids from :func:`hex_ids` strings."""
    return np.sort(np.asarray([int(v, 16) for v in values], dtype=np.uint64))


def read_train_info(folder: Path | str | None) -> dict[str, Any] | None:
    """``train_info.json`` of a checkpoint folder, or None when it has none (or it is unreadable)."""
    if folder is None:
        return None
    try:
        info = json.loads((Path(folder) / TRAIN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
