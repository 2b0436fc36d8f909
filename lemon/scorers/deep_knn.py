"""Deep kNN baseline: label disagreement among the k nearest images.

score = (1/k) * #{j in N(x) : observed label of j != observed label of the query}, with N(x) the k nearest
reference images (the memoised search, self excluded by index; k = ``--knn_k``). A value in [0, 1]; it is
``1 - p_knn(observed)`` of the kNN class probabilities, so it ranks exactly as ``knn_self_confidence``.
Classification only; no hyper-parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lemon.scorers.base import ScoringContext
from lemon.scorers.probs import ClassificationScorer
from lemon.scorers.registry import SCORERS


@SCORERS.register("deep_knn")
class DeepKnnScorer(ClassificationScorer):
    """Fraction of the k image neighbours whose observed label differs from the sample's."""

    streamable = True

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        q = ctx.split(split)
        _, idx = ctx.neighbours(split, "img", self.options.k)
        differs = (
            ctx.reference.observed.astype(np.int64)[idx] != q.observed.astype(np.int64)[:, None]
        )
        return {"score": differs.mean(axis=1)}
