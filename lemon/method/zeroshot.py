"""Zero-shot class probabilities: a softmax over the class prompts of each image's cosine similarity.

Every classification run has them (the image embeddings and one text embedding per class prompt), so the
label-free rule, the cleanlab-style baselines and the suggested labels read them without a trained
classifier.
"""

from __future__ import annotations

import numpy as np


def zero_shot_probs(img: np.ndarray, prompts: np.ndarray, temperature: float) -> np.ndarray:
    """(n, C) softmax over class prompts of the cosine similarity / temperature (float64, stable)."""
    logits = (
        np.asarray(img, dtype=np.float64) @ np.asarray(prompts, dtype=np.float64).T
    ) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)
