"""DATASETS registry: loaders of every dataset of the paper, bring-your-own data and embedding sources."""

from __future__ import annotations

from lemon.data import (
    captioning,
    captioning_medical,
    classification,
    custom,
    demo,
    embeddings,
    synthetic,
)
from lemon.data.registry import DATASETS


def default_noise_type(dataset: str, real_dataset: bool) -> str:
    """The noise a run used when --noise_type was not given (the dataset's first supported one)."""
    if real_dataset:
        return "none"
    if dataset in DATASETS:
        types = DATASETS.get(dataset).noise_types
        return types[0] if types else "given"
    return "default"
