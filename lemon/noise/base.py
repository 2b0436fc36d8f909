"""The noise contract and the seeded helpers every injector shares."""

from __future__ import annotations

import math
import zlib
from fractions import Fraction
from typing import ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.base import TASKS, DatasetSplits, PairSplit


class Noise:
    """An injector of label/caption noise.

    Subclasses set ``name``, ``task`` ('classification', 'captioning' or 'any') and implement
    ``apply(split, level, rng) -> PairSplit`` returning a *new* split whose ``observed`` holds the noisy
    labels (``is_mislabel`` follows from observed vs clean). ``check(splits)`` runs once before any split is
    touched and raises a one-line error when the data lacks what the noise needs. ``uses_level`` is False for
    noise that comes with the data (``real``), whose level is ignored.
    """

    name: ClassVar[str]
    task: ClassVar[str]
    uses_level: ClassVar[bool] = True

    def __init_subclass__(cls, abstract: bool = False, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        missing = [a for a in ("task",) if not hasattr(cls, a)]
        if missing:
            raise TypeError(f"Noise class {cls.__name__} must define {', '.join(missing)}.")
        if cls.task not in (*TASKS, "any"):
            raise TypeError(f"Noise class {cls.__name__}: task must be one of {TASKS} or 'any'.")

    @classmethod
    def compatible(cls, task: str) -> bool:
        return cls.task in (task, "any")

    def check(self, splits: DatasetSplits) -> None:
        """Raise a LemonError when ``splits`` cannot take this noise (default: always fine)."""

    def apply(self, split: PairSplit, level: float, rng: np.random.Generator) -> PairSplit:
        raise NotImplementedError


def check_level(level: float) -> float:
    """The one place ``noise_level`` is validated: a number in [0, 1)."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise LemonError(f"noise_level must be a number in [0, 1), got {level!r}.") from None
    if not 0 <= value < 1 or math.isnan(value):
        raise LemonError(f"noise_level must be in [0, 1), got {level}.")
    return value


def n_noisy(level: float, n: int) -> int:
    """floor(level * n), exact for the decimal the user typed (0.29 * 100 = 29, not 28)."""
    return math.floor(Fraction(repr(float(level))) * n)


def split_rng(data_seed: int, noise: str, split: str) -> np.random.Generator:
    """One generator per (data_seed, noise name, split): splits never share or shift each other's draws."""
    if int(data_seed) < 0:
        raise LemonError(f"data_seed must be >= 0, got {data_seed}.")
    return np.random.default_rng(
        [int(data_seed), zlib.crc32(noise.encode()), zlib.crc32(split.encode())]
    )
