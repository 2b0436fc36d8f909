"""``load_splits``: the one entry point from a run config to a dataset's clean splits (SPEC §1)."""

from __future__ import annotations

import logging
from typing import Any

from lemon.data.base import Dataset, DatasetSplits
from lemon.paths import data_root

log = logging.getLogger(__name__)


def load_splits(dataset: Dataset, cfg: Any) -> DatasetSplits:
    """Resolve the data root, check the files, load train/val/test (no injected noise yet).

    Bring-your-own datasets first read their options (``--data_path``, columns) from ``cfg``. A missing
    dataset raises :class:`lemon.errors.DatasetNotFoundError` naming the path and DataSources.md section.
    Unreadable images are dropped by the loader; their count per split is in ``meta['skipped_images']``
    and logged here.
    """
    from lemon.data.custom import ConfigurableDataset

    if isinstance(dataset, ConfigurableDataset):
        dataset.configure(cfg)
    root = data_root(cfg.data_dir)
    dataset.check_exists(root)
    splits = dataset.load(root, cfg.data_seed)
    sizes = {s: len(p) for s, p in splits.splits.items()}
    skipped = skipped_images(splits)
    log.info("dataset %s (%s) from %s: %s", dataset.name, splits.task, root, sizes)
    if any(skipped.values()):
        log.warning("dataset %s: skipped unreadable images per split: %s", dataset.name, skipped)
    return splits


def skipped_images(splits: DatasetSplits) -> dict[str, int]:
    """Unreadable images dropped per split (for args.json / metrics)."""
    return {s: int(p.meta.get("skipped_images", 0)) for s, p in splits.splits.items()}
