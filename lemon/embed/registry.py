"""EMBEDDERS: the registry of embedders (filled by the modules of :mod:`lemon.embed` as they are
imported), and the one used when neither ``--clip_model`` nor the dataset names one."""

from __future__ import annotations

from lemon.core.registry import Registry

EMBEDDERS: Registry = Registry("embedder")
DEFAULT_EMBEDDER = "huggingface_clip"
