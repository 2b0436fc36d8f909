"""CLIP similarity baseline: the distance between a pair's own image and text embeddings.

score = d_mm = d(x, y): ``1 - x.y`` (cosine) or ``||x - y||^2`` (euclidean, squared), following
``--dist_type`` — exactly LEMoN's first term, i.e. LEMoN with beta = gamma = 0. Works on classification
(y = the observed label's prompt) and captioning data alike; no hyper-parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lemon.scorers.base import Scorer, ScoringContext
from lemon.scorers.lemon import pair_distance
from lemon.scorers.registry import SCORERS


@SCORERS.register("clip_sim")
class ClipSimScorer(Scorer):
    """d_mm: how far each image is from its own observed text (higher = more likely mislabelled)."""

    fold_models = True
    streamable = True

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        q = ctx.split(split)
        d_mm = pair_distance(q.img, q.txt, self.options.dist_type)
        return {"score": d_mm, "d_mm": d_mm}
