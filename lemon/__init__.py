"""lemon: label error detection in image–text data with multimodal neighbours (LEMoN, ICML 2025).

Public API (cleanlab-style, from embeddings or raw images and texts): :func:`find_label_issues` (a mask,
or ranked indices), :func:`get_label_quality_scores` (one score in [0, 1] per pair, lower = worse),
:func:`score_pairs` (the full DataFrame); :class:`Detector` (new pairs scored against a finished run, fitting
nothing); :func:`list_datasets`, :func:`list_scorers`. The command line is ``python -m run_lemon`` and
``python sweep.py``.
"""

from __future__ import annotations

from lemon.core.version import __version__

__all__ = [
    "Detector",
    "__version__",
    "find_label_issues",
    "get_label_quality_scores",
    "list_datasets",
    "list_scorers",
    "score_pairs",
]
_API = ("find_label_issues", "get_label_quality_scores", "score_pairs")


def __getattr__(name: str):
    """The API functions are imported on first use: ``import lemon.<module>`` stays light."""
    if name in _API:
        from lemon.api import issues as api

        return getattr(api, name)
    if name == "Detector":
        from lemon.review.detector import Detector

        return Detector
    raise AttributeError(f"module 'lemon' has no attribute '{name}'")


def list_datasets() -> list[str]:
    """Names accepted by ``--dataset``."""
    from lemon.data import DATASETS

    return DATASETS.names()


def list_scorers() -> list[str]:
    """Names accepted by ``--scorer``."""
    from lemon.scorers import SCORERS

    return SCORERS.names()
