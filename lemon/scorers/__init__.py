"""SCORERS registry: LEMoN and the baselines, all behind one :class:`~lemon.scorers.base.Scorer` interface."""
from __future__ import annotations

from lemon.registry import Registry

SCORERS: Registry = Registry("scorer")

from lemon.scorers import lemon  # noqa: E402,F401  (registers 'lemon')
