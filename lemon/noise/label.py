"""Label noise for classification: ``symmetric``, ``asymmetric`` (pair-flip) and ``real``.

``real`` is noise that comes with the data: CIFAR-N human labels (the CIFAR loaders put them in the
split's ``real_observed``) or the data's own observed labels (web-noise sets, tables with a clean column:
``intrinsic_noise``). Data without ground truth cannot be evaluated and is refused with the fix.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lemon.core.errors import DatasetNotFoundError, LemonError
from lemon.data.base import DatasetSplits, PairSplit
from lemon.noise.base import Noise
from lemon.noise.registry import NOISES


class _ClassFlip(Noise, abstract=True):
    """Each label flips with probability ``level``; subclasses say where it goes."""

    task: ClassVar[str] = "classification"

    def check(self, splits: DatasetSplits) -> None:
        n_classes = len(next(iter(splits.splits.values())).classes)
        if n_classes < 2:
            raise LemonError(
                f"'{self.name}' noise needs at least 2 classes; dataset '{splits.name}' has "
                f"{n_classes}."
            )

    def target(self, labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def apply(self, split: PairSplit, level: float, rng: np.random.Generator) -> PairSplit:
        labels = split.observed.astype(np.int64)
        flip = rng.random(len(labels)) < level
        moved = self.target(labels, len(split.classes), rng)
        return split.with_observed(np.where(flip, moved, labels))


@NOISES.register("symmetric")
class Symmetric(_ClassFlip):
    """Flip to a uniformly random *other* class."""

    def target(self, labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
        return (labels + rng.integers(1, n_classes, len(labels))) % n_classes


@NOISES.register("asymmetric", aliases=("pairflip",))
class Asymmetric(_ClassFlip):
    """Pair-flip: class c goes to (c + 1) mod C."""

    def target(self, labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
        return (labels + 1) % n_classes


@NOISES.register("real")
class Real(Noise):
    """The data's own noisy labels (CIFAR-N human labels, web labels, a table's observed column)."""

    task: ClassVar[str] = "any"
    uses_level: ClassVar[bool] = False

    def check(self, splits: DatasetSplits) -> None:
        first = next(iter(splits.splits.values()))
        if not splits.has_ground_truth:
            injectable = [
                n for n in NOISES.names() if n != "real" and NOISES.get(n).compatible(splits.task)
            ]
            raise LemonError(
                f"Dataset '{splits.name}' has no ground-truth labels, so its real noise cannot "
                f"be evaluated: score it with --real_dataset, or inject noise with --noise_type "
                f"{' / '.join(injectable)}."
            )
        if first.real_missing:
            raise DatasetNotFoundError(first.real_missing)
        if first.real_observed is None and not first.intrinsic_noise:
            raise LemonError(
                f"Dataset '{splits.name}' carries no real noisy labels; use another --noise_type."
            )

    def apply(self, split: PairSplit, level: float, rng: np.random.Generator) -> PairSplit:
        if split.real_observed is not None:
            return split.with_observed(np.asarray(split.real_observed).copy())
        return split.with_observed(split.observed.copy())
