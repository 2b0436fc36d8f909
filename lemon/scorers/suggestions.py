"""Suggested fixes of a scored split (or block), from the image neighbours LEMoN's score already found:
the rule is :mod:`lemon.method.suggest`; this module gathers its inputs from a :class:`ScoringContext`.

Outputs (one value per pair, written by scores.csv under their user-facing names):
classification ``suggested_class`` (class id, -1 = none) and ``suggestion_confidence``; captioning
``suggested_ref`` (reference row whose caption is suggested, -1 = none) and ``suggestion_similarity``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lemon.method.suggest import (
    NONE,
    label_vote,
    neighbour_weights,
    suggest_captions,
    suggest_labels,
)
from lemon.method.zeroshot import fit_temperature, zero_shot_probs
from lemon.scorers.base import ScoringContext

#: neighbour rows gathered at once when the image-caption similarities of candidates are computed
_GATHER_ROWS = 2**17


def suggest(
    ctx: ScoringContext,
    split: str,
    hparams: dict[str, Any],
    prox_n: np.ndarray,
    trd_n: np.ndarray,
    idx_n: np.ndarray,
) -> dict[str, np.ndarray]:
    """The suggested fix of every pair of ``split`` from its image neighbours ``idx_n`` (n, k) and their
    LEMoN weights' inputs ``prox_n`` and ``trd_n`` (see :class:`lemon.scorers.lemon.NeighbourTerms`)."""
    if ctx.features.task == "classification":
        return _labels(ctx, split, hparams, prox_n, trd_n, idx_n)
    return _captions(ctx, split, idx_n)


def _classes(ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """(class ids, their prompt embeddings (C, d) or None, zero-shot temperature or None), once per run.

    The prompts are the run's class prompts, else each class's text embedding in the reference set (a
    classification pair's text is its class prompt). With fold models each row lives in its own model's
    space, so no single set of prompts fits: the vote alone decides.
    """
    memo = ctx.run_memo
    if "suggest_classes" not in memo:
        features, ref = ctx.features, ctx.reference
        observed = np.asarray(ref.observed, dtype=np.int64)
        prompts = features.label_prompt_txt
        if prompts is not None:
            classes = np.arange(len(prompts))
        else:
            classes, first = np.unique(observed, return_index=True)
            prompts = np.asarray(ref.txt[first])
        temperature = None
        if features.fold_train is not None:
            prompts = None
        else:
            rows = np.flatnonzero(_positions(classes, observed) >= 0)  # all of them in practice
            img = ref.img if len(rows) == len(observed) else ref.img[rows]
            temperature = fit_temperature(img, prompts, _positions(classes, observed[rows]))
        memo["suggest_classes"] = (classes, prompts, temperature)
    return memo["suggest_classes"]


def _labels(
    ctx: ScoringContext,
    split: str,
    hparams: dict[str, Any],
    prox_n: np.ndarray,
    trd_n: np.ndarray,
    idx_n: np.ndarray,
) -> dict[str, np.ndarray]:
    classes, prompts, temperature = _classes(ctx)
    q, ref = ctx.split(split), ctx.reference
    weights = neighbour_weights(
        prox_n, trd_n, float(hparams.get("tau_1_n", 0.0)), float(hparams.get("tau_2_n", 0.0))
    )
    vote = label_vote(_positions(classes, ref.observed[idx_n]), weights, len(classes))
    probs = (
        None
        if prompts is None or temperature is None  # both None together (see _classes)
        else zero_shot_probs(q.img, prompts, temperature)
    )
    best, confidence = suggest_labels(vote, _positions(classes, q.observed), probs)
    return {
        "suggested_class": np.where(best == NONE, NONE, classes[np.maximum(best, 0)]),
        "suggestion_confidence": confidence,
    }


def _positions(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Position of each label among the sorted ``classes``; -1 for a label that is not one of them."""
    labels = np.asarray(labels, dtype=np.int64)
    pos = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
    return np.where(classes[pos] == labels, pos, -1)


def _captions(ctx: ScoringContext, split: str, idx_n: np.ndarray) -> dict[str, np.ndarray]:
    q, ref = ctx.split(split), ctx.reference
    candidates = np.asarray(idx_n, dtype=np.int64)
    if (
        ctx.features.fold_train is None
    ):  # fold models: one text searcher cannot serve every fold's images
        candidates = np.concatenate(
            [candidates, ctx.image_to_text(split, idx_n.shape[1])[1]], axis=1
        )
    similarity = _gathered_similarity(q.img, ref.txt, candidates)
    own = ref.texts[candidates] == np.asarray(q.texts, dtype=object)[:, None]
    best, sim = suggest_captions(candidates, similarity, own)
    return {"suggested_ref": best, "suggestion_similarity": sim}


def _gathered_similarity(query: np.ndarray, ref: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(n, m) dot product of each query row with its m reference rows ``ref[idx]`` (float64), gathered in
    chunks of bounded memory."""
    n, m = idx.shape
    out = np.empty((n, m), dtype=np.float64)
    chunk = max(1, _GATHER_ROWS // max(1, m))
    for s in range(0, n, chunk):
        rows = np.asarray(ref[idx[s : s + chunk].ravel()], dtype=np.float32)
        rows = rows.reshape(len(idx[s : s + chunk]), m, -1)
        out[s : s + chunk] = np.einsum(
            "nkd,nd->nk", rows, np.asarray(query[s : s + chunk], dtype=np.float32)
        )
    return out
