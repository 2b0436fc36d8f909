"""The split rules of the paper, in one place.

The random rules use scikit-learn's ``train_test_split`` with ``random_state=data_seed`` exactly as the
original LEMoN code did, so a given ``data_seed`` selects the same train/val/test members as the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from lemon.data.base import SPLITS, DatasetSplits, Dropped, PairSplit
from lemon.errors import LemonError


def random_80_10_10(n: int, data_seed: int) -> dict[str, np.ndarray]:
    """CIFAR rule: 80% train, then the remaining 20% halved into val and test (seeded by ``data_seed``)."""
    from sklearn.model_selection import train_test_split

    train, rest = train_test_split(np.arange(n), test_size=0.2, random_state=data_seed)
    val, test = train_test_split(rest, test_size=0.5, random_state=data_seed)
    return {"train": np.asarray(train), "val": np.asarray(val), "test": np.asarray(test)}


def stratified_50_25_25(is_clean: np.ndarray, data_seed: int) -> dict[str, np.ndarray]:
    """Red web-noise rule: 50/25/25 train/val/test, stratified by the ``is_clean`` flag."""
    from sklearn.model_selection import train_test_split

    is_clean = np.asarray(is_clean).astype(bool)
    index = np.arange(len(is_clean))
    try:
        train_val, test = train_test_split(
            index, train_size=0.75, stratify=is_clean, random_state=data_seed
        )
        train, val = train_test_split(
            train_val, train_size=0.5 / 0.75, stratify=is_clean[train_val], random_state=data_seed
        )
    except ValueError as err:  # too few samples of one kind to stratify
        raise LemonError(
            f"Cannot split {len(is_clean)} samples ({int(is_clean.sum())} clean) 50/25/25 "
            f"stratified by is_clean: {err}"
        ) from err
    return {"train": np.asarray(train), "val": np.asarray(val), "test": np.asarray(test)}


def named_splits(split_names: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """Official split column -> indices; 'restval' joins train, 'dev'/'validate'/'validation' mean val."""
    aliases = {"restval": "train", "dev": "val", "validate": "val", "validation": "val"}
    names = np.asarray([aliases.get(str(s), str(s)) for s in split_names])
    unknown = sorted(set(names) - set(SPLITS))
    if unknown:
        raise LemonError(
            f"Dataset '{name}': unknown split name(s) {unknown}; expected train, val "
            f"(or dev/validate/validation), test (or restval, which joins train)."
        )
    return {s: np.flatnonzero(names == s) for s in SPLITS}


def build_splits(
    name: str,
    task: str,
    pairs: PairSplit,
    index: Mapping[str, np.ndarray],
    keep: Mapping[str, np.ndarray] | None = None,
    class_names=None,
    has_ground_truth: bool = True,
) -> DatasetSplits:
    """Cut one all-rows :class:`PairSplit` into train/val/test by ``index``.

    ``keep`` maps a reason (e.g. 'unreadable image') to a row mask: rows where it is False are dropped
    *after* splitting, so the other rows keep the split the rule gives them, and each split records them
    in its ``dropped`` under the first reason that drops them. What ``pairs`` had dropped already is the
    dataset's ``dropped`` (lost before splitting). Empty splits are an error.
    """
    splits = {}
    for s in SPLITS:
        rows = np.sort(np.asarray(index[s], dtype=np.int64))
        part = dataclasses.replace(pairs.subset(rows), split=s, dropped=Dropped())
        for reason, mask in (keep or {}).items():
            part = part.drop(mask[rows], reason)
            rows = rows[mask[rows]]
        if len(part) == 0:
            lost = ", ".join(f"{n} {r}" for r, n in part.dropped.counts().items()) or "no pair"
            raise LemonError(
                f"Dataset '{name}': the '{s}' split is empty after loading ({lost} dropped); check "
                f"the files (see DataSources.md#{name})."
            )
        splits[s] = part
    return DatasetSplits(
        name=name,
        task=task,
        splits=splits,
        class_names=class_names,
        has_ground_truth=has_ground_truth,
        dropped=pairs.dropped,
    )
