"""DATASETS: the registry of datasets (filled by the modules of :mod:`lemon.data` as they are imported)."""

from __future__ import annotations

from lemon.core.registry import Registry

DATASETS: Registry = Registry("dataset")
