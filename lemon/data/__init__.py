"""DATASETS registry: loaders of every dataset of the paper, bring-your-own data and embedding sources."""

from __future__ import annotations

from lemon.registry import Registry

DATASETS: Registry = Registry("dataset")

from lemon.data import (
    captioning,
    captioning_medical,
    classification,
    custom,
    demo,
    embeddings,
    synthetic,
)
