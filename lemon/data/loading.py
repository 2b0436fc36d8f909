"""``load_splits``: the one entry point from a dataset to its clean splits."""

from __future__ import annotations

import logging

from lemon.core.paths import data_root
from lemon.data.base import Dataset, DatasetSplits

log = logging.getLogger(__name__)


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
        log.warning("dataset %s: pairs dropped (not scored) per split: %s", dataset.name, dropped)
    return splits


def dropped_total(splits: DatasetSplits) -> int:
    """How many pairs of the source the splits do not hold."""
    return len(splits.dropped) + sum(len(p.dropped) for p in splits.splits.values())
