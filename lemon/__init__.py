"""lemon: label error detection in image–text data with multimodal neighbours (LEMoN, ICML 2025).

Public API: :func:`find_label_issues` (bring your own embeddings), :func:`list_datasets`,
:func:`list_scorers`; the command line is ``python -m run_lemon`` and ``python sweep.py``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "find_label_issues", "list_datasets", "list_scorers"]


def __getattr__(name: str):
    """``lemon.find_label_issues`` is imported on first use: ``import lemon.<module>`` stays light."""
    if name == "find_label_issues":
        from lemon.api import find_label_issues

        return find_label_issues
    raise AttributeError(f"module 'lemon' has no attribute '{name}'")


def list_datasets() -> list[str]:
    """Names accepted by ``--dataset``."""
    from lemon.data import DATASETS

    return DATASETS.names()


def list_scorers() -> list[str]:
    """Names accepted by ``--scorer``."""
    from lemon.scorers import SCORERS

    return SCORERS.names()
