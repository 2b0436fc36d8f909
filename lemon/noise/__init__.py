"""NOISES registry and ``apply_noise``: seeded, deterministic label/caption noise.

``apply_noise(splits, noise_type, level, data_seed)`` validates the level once, checks that the noise
suits the dataset, then draws every split with its own generator derived from (data_seed, noise, split).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from lemon.core.errors import LemonError
from lemon.data.base import DatasetSplits
from lemon.noise import caption, label
from lemon.noise.registry import NOISES

log = logging.getLogger(__name__)

from lemon.noise.base import Noise, check_level, n_noisy, split_rng

__all__ = [
    "NOISES",
    "Noise",
    "apply_noise",
    "check_level",
    "n_noisy",
    "split_rng",
    "supported_noises",
]


def supported_noises(splits: DatasetSplits) -> list[str]:
    """Noise types the dataset declares (in its order) that suit its task; all suitable ones if unregistered."""
    from lemon.data import DATASETS

    declared = DATASETS.get(splits.name).noise_types if splits.name in DATASETS else NOISES.names()
    return [n for n in declared if n in NOISES and NOISES.get(n).compatible(splits.task)]


def apply_noise(
    splits: DatasetSplits, noise_type: str, level: float, data_seed: int, **options: Any
) -> DatasetSplits:
    """A copy of ``splits`` whose observed labels/captions carry ``noise_type`` noise at ``level``.

    ``options`` go to the noise constructor (e.g. ``tagger=`` for ``noun``). Raises LemonError for an
    unknown type (with the valid ones), a level outside [0, 1), or a type the dataset does not support.
    """
    name = NOISES.canonical(noise_type)
    level = check_level(level)
    supported = supported_noises(splits)
    if name not in supported:
        raise LemonError(
            f"Noise type '{name}' is not supported for dataset '{splits.name}'; supported: "
            f"{', '.join(supported) or 'none'}."
        )
    noise = NOISES.build(name, **options)
    noise.check(splits)
    if not noise.uses_level and level:
        log.info(
            "noise_level %s is ignored by '%s' noise: the noisy labels come with the data",
            level,
            name,
        )
    out = {
        s: dataclasses.replace(
            noise.apply(split, level, split_rng(data_seed, name, s)),
            noise=name,
            noise_level=level if noise.uses_level else None,
        )
        for s, split in splits.splits.items()
    }
    log.info(
        "noise %s (level %s): mislabelled per split %s",
        name,
        level,
        {s: int(p.is_mislabel.sum()) for s, p in out.items()},
    )
    return dataclasses.replace(splits, splits=out, has_ground_truth=True)
