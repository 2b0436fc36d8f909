"""The split rules of the paper, in one place.

The random rules use scikit-learn's ``train_test_split`` with ``random_state=data_seed`` exactly as the
original LEMoN code did, so a given ``data_seed`` selects the same train/val/test members as the original.
Your own tables and folders are split by image identity instead (:func:`identity_splits`): the same images
fall into the same splits whatever the row order, and whether they come as a table or as a folder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.base import SPLITS, DatasetSplits, Dropped, PairSplit, content_id


def split_sizes_80_10_10(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes of an 80/10/10 split of ``n`` items, as ``train_test_split`` rounds them:
    the test-side share rounds up (20% of n, then half of that)."""
    rest = math.ceil(0.2 * n)
    test = math.ceil(0.5 * rest)
    return n - rest, rest - test, test


#: the fewest items an 80/10/10 split can cut into three non-empty splits
MIN_SPLIT_ITEMS = next(n for n in range(1, 100) if min(split_sizes_80_10_10(n)) > 0)


def check_splittable(n: int, name: str, items: str = "rows") -> None:
    """The one-line error for data too small for train/val/test (80/10/10 needs MIN_SPLIT_ITEMS items)."""
    if n < MIN_SPLIT_ITEMS:
        raise LemonError(
            f"Dataset '{name}': {n} {items} are too few for train/val/test splits (80/10/10 needs at "
            f"least {MIN_SPLIT_ITEMS}); add data, or give the splits yourself (a 'split' column, or "
            "train/val/test folders)."
        )


def random_80_10_10(n: int, data_seed: int, name: str = "dataset") -> dict[str, np.ndarray]:
    """CIFAR rule: 80% train, then the remaining 20% halved into val and test (seeded by ``data_seed``)."""
    from sklearn.model_selection import train_test_split

    check_splittable(n, name)
    train, rest = train_test_split(np.arange(n), test_size=0.2, random_state=data_seed)
    val, test = train_test_split(rest, test_size=0.5, random_state=data_seed)
    return {"train": np.asarray(train), "val": np.asarray(val), "test": np.asarray(test)}


def mix64(values: np.ndarray, seed: int, purpose: str) -> np.ndarray:
    """A seeded bijective scramble of uint64 values (splitmix64 finaliser): a per-seed random order of
    content ids that depends on nothing else (not on the other items, nor on their order)."""
    key = np.uint64(content_id(f"{seed}/{purpose}".encode()))
    x = np.asarray(values, dtype=np.uint64) ^ key
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def identity_splits(identity: np.ndarray, data_seed: int, name: str) -> dict[str, np.ndarray]:
    """80/10/10 over distinct images: every row of one image lands in the same split.

    The distinct content ids are ordered by a seeded scramble of themselves; the first 80% form train, the
    next 10% val, the rest test (sizes as :func:`split_sizes_80_10_10`). An image's split thus depends on
    its bytes, ``data_seed`` and the set of images, never on row order or file names.
    """
    unique, inverse = np.unique(np.asarray(identity, dtype=np.uint64), return_inverse=True)
    check_splittable(len(unique), name, "distinct images")
    n_train, n_val, _ = split_sizes_80_10_10(len(unique))
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(mix64(unique, data_seed, "split"), kind="stable")] = np.arange(len(unique))
    row_rank = rank[inverse.reshape(-1)]
    return {
        "train": np.flatnonzero(row_rank < n_train),
        "val": np.flatnonzero((row_rank >= n_train) & (row_rank < n_train + n_val)),
        "test": np.flatnonzero(row_rank >= n_train + n_val),
    }


def assign_folds(identity: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(n,) fold of each row: distinct images in a seeded scrambled order, dealt round-robin into ``k``
    folds (sizes differ by at most one image); every row of one image shares its fold."""
    unique, inverse = np.unique(np.asarray(identity, dtype=np.uint64), return_inverse=True)
    if len(unique) < k:
        raise LemonError(
            f"--folds {k} needs at least {k} distinct training images, got {len(unique)}; use fewer "
            "folds."
        )
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(mix64(unique, seed, "fold"), kind="stable")] = np.arange(len(unique))
    return (rank % k)[inverse.reshape(-1)]


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
