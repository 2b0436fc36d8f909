"""The Python API (cleanlab-style): :func:`find_label_issues`, :func:`get_label_quality_scores`,
:func:`score_pairs`; inputs are checked once at this door (:mod:`lemon.api.inputs`)."""

from lemon.api.issues import find_label_issues, get_label_quality_scores, score_pairs

__all__ = ["find_label_issues", "get_label_quality_scores", "score_pairs"]
