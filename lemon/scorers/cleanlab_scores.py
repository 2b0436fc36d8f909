"""cleanlab-style label-quality baselines on zero-shot or kNN class probabilities.

The formulas are cleanlab's own — ``cleanlab.rank.get_self_confidence_for_each_label``,
``get_normalized_margin_for_each_label`` and ``get_confidence_weighted_entropy_for_each_label`` are called,
not re-derived — on one of two kinds of class probabilities (see :mod:`lemon.scorers.probs`):

- ``self_confidence``, ``normalized_margin``, ``confidence_weighted_entropy``: the user's ``S_pred_probs``
  when given, else CLIP zero-shot probabilities over the class prompts (temperature ``--temperature``);
- ``knn_self_confidence``, ``knn_normalized_margin``, ``knn_confidence_weighted_entropy``: the fraction of
  the k image neighbours in each class (k = ``--knn_k``, self excluded by index).

cleanlab returns a quality in [0, 1], lower = more likely mislabelled; the score is ``1 - quality``
(higher = more likely mislabelled, same ranking), and the quality is kept as a scores.csv column.
Classification only. Needs the ``cleanlab`` package (``pip install cleanlab``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from lemon.core.errors import MissingDependencyError
from lemon.scorers.base import ScoringContext
from lemon.scorers.probs import ClassificationScorer, class_probs, knn_class_probs
from lemon.scorers.registry import SCORERS


def cleanlab_quality(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """cleanlab.rank's ``get_<method>_for_each_label`` (labels, pred_probs) -> quality, lower = worse."""
    try:
        from cleanlab import rank
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"The '{method}' scorers call cleanlab, which is not installed; "
            "pip install cleanlab (or lemon[dev])."
        ) from err
    return getattr(rank, f"get_{method}_for_each_label")


class _CleanlabScorer(ClassificationScorer):
    """1 - cleanlab quality (``method``) on ``probs``: 'zero_shot' (or given) or 'knn' class probabilities."""

    method: ClassVar[str]
    probs: ClassVar[str]

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        info = {"class_probs": "knn"} if self.probs == "knn" else self.probability_info(ctx)
        return {"cleanlab_method": self.method, **info}

    def probabilities(self, ctx: ScoringContext, split: str) -> np.ndarray:
        if self.probs == "knn":
            return knn_class_probs(ctx, split, self.options.k)
        return class_probs(ctx, ctx.split(split), self.options.temperature)

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        labels = ctx.split(split).observed.astype(np.int64)
        probs = np.clip(
            self.probabilities(ctx, split), 0.0, 1.0
        )  # rounding guard for cleanlab's checks
        quality = np.asarray(cleanlab_quality(self.method)(labels, probs), dtype=np.float64)
        return {"score": 1.0 - quality, "quality": quality}


@SCORERS.register("self_confidence")
class SelfConfidenceScorer(_CleanlabScorer):
    """1 - p(observed class), zero-shot (or given) probabilities."""

    method = "self_confidence"
    probs = prob_source = "zero_shot"


@SCORERS.register("normalized_margin")
class NormalizedMarginScorer(_CleanlabScorer):
    """1 - cleanlab normalised margin, zero-shot (or given) probabilities."""

    method = "normalized_margin"
    probs = prob_source = "zero_shot"


@SCORERS.register("confidence_weighted_entropy")
class ConfidenceWeightedEntropyScorer(_CleanlabScorer):
    """1 - cleanlab confidence-weighted entropy quality, zero-shot (or given) probabilities."""

    method = "confidence_weighted_entropy"
    probs = prob_source = "zero_shot"


@SCORERS.register("knn_self_confidence")
class KnnSelfConfidenceScorer(_CleanlabScorer):
    """1 - kNN fraction of the observed class (ranks as deep_knn)."""

    method, probs = "self_confidence", "knn"


@SCORERS.register("knn_normalized_margin")
class KnnNormalizedMarginScorer(_CleanlabScorer):
    """1 - cleanlab normalised margin on kNN class probabilities."""

    method, probs = "normalized_margin", "knn"


@SCORERS.register("knn_confidence_weighted_entropy")
class KnnConfidenceWeightedEntropyScorer(_CleanlabScorer):
    """1 - cleanlab confidence-weighted entropy quality on kNN class probabilities."""

    method, probs = "confidence_weighted_entropy", "knn"
