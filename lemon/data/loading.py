"""``load_splits``: the one entry point from a dataset to its clean splits."""

from __future__ import annotations

import logging

from lemon.core.paths import data_root
from lemon.data.base import (
    CONFLICTING_LABEL,
    HIDDEN_FILE,
    MISSING_IMAGE,
    NO_CLASS_FOLDER,
    NOT_AN_IMAGE,
    TOO_LARGE_IMAGE,
    UNREADABLE_IMAGE,
    UNSUPPORTED_IMAGE,
    URL_IMAGE,
    Dataset,
    DatasetSplits,
)

log = logging.getLogger(__name__)
#: drop reasons whose loader names them in a warning of its own (lemon.data.custom)
SELF_WARNED = frozenset(
    {
        MISSING_IMAGE,
        UNREADABLE_IMAGE,
        TOO_LARGE_IMAGE,
        UNSUPPORTED_IMAGE,
        URL_IMAGE,
        NOT_AN_IMAGE,
        HIDDEN_FILE,
        NO_CLASS_FOLDER,
        CONFLICTING_LABEL,
    }
)


def load_splits(dataset: Dataset) -> DatasetSplits:
    """Resolve the data root, check the files, load train/val/test (no injected noise yet).

    The dataset's :class:`~lemon.data.base.DataOptions` say where the data is and its seed. A missing
    dataset raises :class:`lemon.core.errors.DatasetNotFoundError` naming the path and DataSources.md section.
    Pairs a loader cannot use (unreadable images, empty texts, ...) are dropped and recorded per split,
    with their reason, in ``dropped``; their counts are logged here.
    """
    root = data_root(dataset.options.data_dir)
    dataset.check_exists(root)
    splits = dataset.load(root, dataset.options.data_seed)
    sizes = {s: len(p) for s, p in splits.splits.items()}
    log.info("dataset %s (%s) from %s: %s", dataset.name, splits.task, dataset.source(root), sizes)
    dropped = {s: c for s, c in splits.dropped_counts().items() if c}
    if dropped:
        log.info("dataset %s: pairs dropped (not scored) per split: %s", dataset.name, dropped)
    # reasons the loaders warn about themselves (with the first file and the fix) are not said twice
    quiet = {s: {r: n for r, n in c.items() if r not in SELF_WARNED} for s, c in dropped.items()}
    quiet = {s: c for s, c in quiet.items() if c}
    if quiet:
        log.warning("dataset %s: pairs dropped (not scored) per split: %s", dataset.name, quiet)
    return splits


def dropped_total(splits: DatasetSplits) -> int:
    """How many pairs of the source the splits do not hold."""
    return len(splits.dropped) + sum(len(p.dropped) for p in splits.splits.values())
