"""SCORERS: the registry of scorers (filled by the modules of :mod:`lemon.scorers` as they are imported)."""

from __future__ import annotations

from lemon.core.registry import Registry

SCORERS: Registry = Registry("scorer")
