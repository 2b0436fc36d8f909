"""Shared helpers of the classification baselines: class probabilities and the classification-only check.

Two sources of class probabilities (n, C), both computed on the cached, unit-norm embeddings:

- *zero-shot*: ``softmax(x . t_c / T)`` over the C class-prompt embeddings ``t_c`` (``label_prompt_txt``), with
  T = ``--temperature`` (1 by default, as the paper's CLIP-logits baseline; 0.01 is CLIP's own logit
  scale). Class probabilities brought by the user (``S_pred_probs`` in the ``--embeddings`` npz, e.g. a
  classifier's out-of-sample predictions) replace them when present;
- *kNN*: the fraction of the k image neighbours (from the memoised reference search, self excluded by
  index) carrying each observed class.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.features import Features, SplitFeatures
from lemon.method.zeroshot import zero_shot_probs
from lemon.scorers.base import Scorer, ScoringContext
from lemon.scorers.registry import SCORERS

log = logging.getLogger(__name__)


def n_classes(features: Features) -> int:
    """Number of classes C: class names, else prompts, else user probabilities, else max label + 1."""
    if features.class_names is not None:
        return len(features.class_names)
    if features.label_prompt_txt is not None:
        return len(features.label_prompt_txt)
    first = next(iter(features.splits.values()))
    if first.pred_probs is not None:
        return int(np.asarray(first.pred_probs).shape[1])
    return int(max(np.max(s.observed) for s in features.splits.values())) + 1


def check_pred_probs(features: Features) -> bool:
    """Validate user class probabilities; True when every split has them, False when none has.

    They must come for every split or for none (the reference set and every scored split need the same
    kind of probability), have C columns and be rows of probabilities (non-negative, summing to 1).
    """
    given = [s for s, f in features.splits.items() if f.pred_probs is not None]
    if not given:
        return False
    missing = [s for s in features.splits if s not in given]
    if missing:
        raise LemonError(
            f"S_pred_probs is given for {', '.join(given)} but not for {', '.join(missing)}; "
            "give it for every split or for none (then zero-shot probabilities from the "
            "class prompts are used)."
        )
    c = n_classes(features)
    for name, f in features.splits.items():
        p = np.asarray(f.pred_probs, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != c:
            raise LemonError(
                f"{name}_pred_probs must have shape (n, {c}) (one column per class), got {p.shape}."
            )
        sums = p.sum(axis=1)
        bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (np.abs(sums - 1) > 1e-3)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise LemonError(
                f"{name}_pred_probs must hold probabilities (finite, >= 0, rows summing to 1); "
                f"row {i} sums to {sums[i]:.4g}. Pass probabilities, not logits (apply a "
                "softmax)."
            )
    return True


def class_probs(ctx: ScoringContext, q: SplitFeatures, temperature: float) -> np.ndarray:
    """(n, C) class probabilities of ``q``: the user's ``pred_probs`` if given, else zero-shot ones at
    ``temperature``."""
    if q.pred_probs is not None:
        return np.asarray(q.pred_probs, dtype=np.float64)
    return zero_shot_probs(q.img, class_prompts(ctx), temperature)


def class_prompts(ctx: ScoringContext) -> np.ndarray:
    """(C, d) class prompt embeddings, for zero-shot probabilities: ClassificationScorer.check refused
    data without them wherever they are needed."""
    prompts = ctx.features.label_prompt_txt
    assert prompts is not None, "ClassificationScorer.check requires label_prompt_txt"
    return prompts


def neighbour_label_counts(labels: np.ndarray, weights: np.ndarray, c: int) -> np.ndarray:
    """(n, C) sum of ``weights`` (n, k) per class of the neighbours' ``labels`` (n, k), vectorised."""
    n = len(labels)
    flat = (np.arange(n)[:, None] * c + labels).ravel()
    return np.bincount(
        flat, weights=np.asarray(weights, dtype=np.float64).ravel(), minlength=n * c
    ).reshape(n, c)


def knn_class_probs(ctx: ScoringContext, split: str, k: int) -> np.ndarray:
    """(n, C) fraction of the k image neighbours of each sample of ``split`` in each observed class."""
    _, idx = ctx.neighbours(split, "img", k)
    labels = ctx.reference.observed.astype(np.int64)[idx]
    return neighbour_label_counts(labels, np.full(idx.shape, 1.0 / k), n_classes(ctx.features))


class ClassificationScorer(Scorer):
    """Base of the baselines that need class labels.

    ``prob_source``: 'none' (labels only), 'prompts' (CLIP class-prompt embeddings required) or
    'zero_shot' (user ``pred_probs`` if given, else the class prompts).
    """

    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    prob_source: ClassVar[str] = "none"

    def check(self, features: Features) -> None:
        if features.task not in self.tasks:
            capable = [n for n in SCORERS.names() if features.task in SCORERS.get(n).tasks]
            raise LemonError(
                f"Scorer '{self.name}' needs class labels, but this dataset is {features.task}; "
                f"scorers for {features.task} data: {', '.join(capable)}."
            )
        c = n_classes(features)
        for name, f in features.splits.items():
            obs = np.asarray(f.observed)
            if obs.size and (obs.min() < 0 or obs.max() >= c):
                raise LemonError(
                    f"{name} observed labels must be class ids in [0, {c}), got values in "
                    f"[{obs.min()}, {obs.max()}]; give one class name / prompt per class."
                )
        if self.prob_source == "none":
            return
        if self.prob_source == "prompts":
            if any(f.pred_probs is not None for f in features.splits.values()):
                log.warning(
                    "scorer '%s' uses CLIP zero-shot probabilities: the given S_pred_probs are "
                    "ignored (--scorer self_confidence scores 1 - p(observed label) on them).",
                    self.name,
                )
            if features.label_prompt_txt is None:
                raise LemonError(
                    f"Scorer '{self.name}' needs the class prompt embeddings "
                    "(label_prompt_txt (C, d) in the --embeddings npz)."
                )
            return
        if not check_pred_probs(features) and features.label_prompt_txt is None:
            raise LemonError(
                f"Scorer '{self.name}' needs class probabilities: S_pred_probs (n, C) for every "
                "split, or class prompt embeddings (label_prompt_txt (C, d)) in the "
                "--embeddings npz for zero-shot ones."
            )

    def probability_info(self, ctx: ScoringContext) -> dict[str, Any]:
        """What the class probabilities are, for hparams.json."""
        if self.prob_source == "zero_shot" and ctx.reference.pred_probs is not None:
            return {"class_probs": "pred_probs"}
        return {"class_probs": "zero_shot", "temperature": float(self.options.temperature)}
