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


#: temperatures :func:`fit_temperature` chooses among (log-spaced; CLIP's own is 0.01)
TEMPERATURES = np.geomspace(0.002, 2.0, 61)


def fit_temperature(
    img: np.ndarray,
    prompts: np.ndarray,
    observed: np.ndarray,
    max_rows: int = 20_000,
    seed: int = 0,
) -> float:
    """The softmax temperature under which the zero-shot probabilities best explain the observed labels
    (highest mean log-likelihood over :data:`TEMPERATURES`), fitted on a seeded sample of at most
    ``max_rows`` rows.

    No clean label is read: the observed labels are mostly right, and their errors only flatten the
    fitted softmax a little (a higher temperature), which keeps the probabilities honest rather than
    over-confident. ``observed``: (n,) class ids into ``prompts``' rows.
    """
    observed = np.asarray(observed, dtype=np.int64)
    rows = np.arange(len(observed))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng([seed, 31]).choice(len(rows), max_rows, replace=False))
    sims = np.asarray(img[rows], dtype=np.float64) @ np.asarray(prompts, dtype=np.float64).T
    at_label = sims[np.arange(len(rows)), observed[rows]]
    best, best_ll = float(TEMPERATURES[0]), -np.inf
    for t in TEMPERATURES:  # 61 temperatures, each vectorised over the sample
        logits = sims / t
        top = logits.max(axis=1)
        log_norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        ll = float(np.mean(at_label / t - log_norm))
        if ll > best_ll:
            best, best_ll = float(t), ll
    return best
