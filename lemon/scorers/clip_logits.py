"""CLIP-logits baseline: zero-shot probability of the observed class, over all class prompts.

p = softmax_c(x . t_c / T) over the C class-prompt embeddings t_c, with T = ``--temperature`` (1 by default,
as in the paper; the original README's later analysis also used 0.01, 0.015 and 0.07), and
score = 1 - p(observed class). Unlike d_mm, the score of a pair depends on how close the image is to the
*other* classes too. Classification only; always CLIP's own probabilities (``S_pred_probs`` are ignored
here, with a warning: ``--scorer self_confidence`` scores 1 - p(observed) on them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lemon.method.zeroshot import zero_shot_probs
from lemon.scorers.base import ScoringContext
from lemon.scorers.probs import ClassificationScorer, class_prompts
from lemon.scorers.registry import SCORERS


@SCORERS.register("clip_logits")
class ClipLogitsScorer(ClassificationScorer):
    """1 - softmax(cosine similarity / T)[observed class]."""

    prob_source = "prompts"
    streamable = True

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        return {"temperature": float(self.options.temperature)}

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        q = ctx.split(split)
        temperature = float(hparams.get("temperature", self.options.temperature))
        probs = zero_shot_probs(q.img, class_prompts(ctx), temperature)
        p_obs = probs[np.arange(len(q)), q.observed.astype(np.int64)]
        return {"score": 1.0 - p_obs, "p_observed": p_obs}
