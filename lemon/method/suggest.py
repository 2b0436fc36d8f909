"""A suggested fix for every pair, from the neighbours the score already found (no search of its own for
labels; one image-to-text search for captions).

A fix answers "if this pair is wrong, what should it say?", so it is never the pair's own label or caption:

- classification: the image neighbours' observed labels, each weighted as LEMoN's ``s_n`` weights it
  (proximity ``exp(tau_1n * prox)`` times reliability ``exp(-tau_2n * d(x_j, y_j))``), smoothed by the
  neighbours' effective number, times the zero-shot class probabilities (the image against every class
  prompt, :mod:`lemon.method.zeroshot`); ``suggested`` = the most probable class other than the observed
  one, ``confidence`` = its probability given that the observed label is wrong (renormalised without it).
- captioning: among the captions of the image's neighbours and the reference captions nearest the image
  (an image-to-text search), the one whose embedding is closest to the image, other than the pair's own
  caption; ``similarity`` = its cosine similarity with the image.

On CIFAR-10 with real and synthetic noise (``benchmarks/bench_suggest.py``, docs/review.md) the fix is the
clean class for 0.96 of the true errors with Swin probabilities, where the Swin's argmax alone reaches 0.91:
leaving out the observed label is most of the gain (when the model agrees with a wrong label, its second
choice is usually right).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lemon.data.features import Features

#: scorer output keys holding a suggestion (ids, then their confidence): what scores.csv translates
SUGGESTION_KEYS = (
    "suggested_class",
    "suggestion_confidence",
    "suggested_ref",
    "suggestion_similarity",
)
#: no suggestion (every candidate is the pair's own label or caption)
NONE = -1


def neighbour_weights(prox: np.ndarray, trd: np.ndarray, tau_1: float, tau_2: float) -> np.ndarray:
    """(n, k) LEMoN's ``s_n`` weight of each image neighbour, ``exp(tau_1 * prox - tau_2 * trd)``, scaled
    per row by its largest (the vote only needs ratios; no overflow at large tau).

    prox : (n, k) the proximity inside LEMoN's w1 (a.b for cosine, -||a - b||^2 for euclidean)
    trd : (n, k) each neighbour's own multimodal distance d(x_j, y_j)
    """
    logw = float(tau_1) * np.asarray(prox, dtype=np.float64) - float(tau_2) * np.asarray(
        trd, dtype=np.float64
    )
    return np.exp(logw - logw.max(axis=1, keepdims=True))


def label_vote(labels: np.ndarray, weights: np.ndarray, n_classes: int) -> np.ndarray:
    """(n, C) class distribution of the weighted neighbour vote, smoothed towards uniform by one pseudo-
    neighbour against the neighbours' effective number (Kish: (sum w)^2 / sum w^2, between 1 and k), so
    that one dominant neighbour does not make a certain vote.

    labels : (n, k) class ids in [0, C) of the neighbours (ids outside are ignored)
    weights : (n, k) non-negative weights
    """
    labels = np.asarray(labels, dtype=np.int64)
    w = np.where((labels >= 0) & (labels < n_classes), np.asarray(weights, dtype=np.float64), 0.0)
    n = len(labels)
    vote = np.zeros((n, n_classes))
    rows = np.repeat(np.arange(n), labels.shape[1])
    np.add.at(vote, (rows, np.clip(labels, 0, n_classes - 1).ravel()), w.ravel())
    total = w.sum(axis=1, keepdims=True)
    effective = np.divide(
        total**2, (w**2).sum(axis=1, keepdims=True), where=total > 0, out=np.zeros_like(total)
    )
    share = np.divide(vote, total, where=total > 0, out=np.zeros_like(vote))
    return (effective * share + 1.0 / n_classes) / (effective + 1.0)


def suggest_labels(
    vote: np.ndarray, observed: np.ndarray, class_probs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(suggested class id, confidence), each (n,): the most probable class other than the observed one
    under ``vote * class_probs`` (normalised), and its probability renormalised without the observed
    class. :data:`NONE` and NaN where no other class has any probability.

    vote : (n, C) neighbour vote (:func:`label_vote`); class_probs : (n, C) zero-shot probabilities or None
    observed : (n,) the pair's observed class id (an id outside [0, C) excludes nothing)
    """
    p = np.asarray(vote, dtype=np.float64)
    if class_probs is not None:
        p = p * np.asarray(class_probs, dtype=np.float64)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    observed = np.asarray(observed, dtype=np.int64)
    own = (observed >= 0) & (observed < p.shape[1])
    others = p.copy()
    others[np.flatnonzero(own), observed[own]] = -1.0
    best = np.argmax(others, axis=1)
    top = others[np.arange(len(p)), best]
    rest = 1.0 - np.where(own, p[np.arange(len(p)), np.where(own, observed, 0)], 0.0)
    found = top > 0
    confidence = np.where(found, top / np.maximum(rest, 1e-300), np.nan)
    return np.where(found, best, NONE), np.clip(confidence, 0.0, 1.0)


def suggest_captions(
    candidates: np.ndarray, similarity: np.ndarray, own: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(suggested candidate id, its similarity), each (n,): the candidate most similar to the image among
    those that are not the pair's own caption; :data:`NONE` and NaN where every candidate is.

    candidates : (n, m) candidate ids (reference rows); similarity : (n, m) image-caption cosine
    similarity of each; own : (n, m) bool, True where the candidate's caption is the pair's own
    """
    s = np.where(np.asarray(own, dtype=bool), -np.inf, np.asarray(similarity, dtype=np.float64))
    best = np.argmax(s, axis=1)
    rows = np.arange(len(s))
    top = s[rows, best]
    found = np.isfinite(top)
    return np.where(found, np.asarray(candidates)[rows, best], NONE), np.where(found, top, np.nan)


def suggestion_columns(
    features: Features, out: dict[str, np.ndarray], rows: slice
) -> dict[str, Any]:
    """scores.csv's suggestion columns of rows ``rows`` of a scored split's outputs ``out``: the class as the
    input names it (``class_names``; the class id only when the data has none) or the caption of the
    suggested reference row; empty where there is no suggestion. {} when the scorer made none."""
    if "suggested_class" in out:
        ids = np.asarray(out["suggested_class"][rows], dtype=np.int64)
        names = features.class_names
        given = ids if names is None else np.asarray(list(names), dtype=object)[np.maximum(ids, 0)]
        label = given.astype(object)
        label[ids == NONE] = None
        return {
            "suggested_label": label,
            "suggestion_confidence": out["suggestion_confidence"][rows],
        }
    if "suggested_ref" in out:
        ref = np.asarray(out["suggested_ref"][rows], dtype=np.int64)
        train_rows = features.reference_index[features.reference_rows(np.maximum(ref, 0))]
        captions = np.asarray(features.splits["train"].observed, dtype=object)[train_rows]
        return {
            "suggested_text": np.where(ref == NONE, None, captions),
            "suggestion_similarity": out["suggestion_similarity"][rows],
        }
    return {}
