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
