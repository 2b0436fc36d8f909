"""NOISES: the registry of noise types (filled by the modules of :mod:`lemon.noise` as they are imported)."""

from __future__ import annotations

from lemon.core.registry import Registry

NOISES: Registry = Registry("noise type")
