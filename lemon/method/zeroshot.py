"""Zero-shot class probabilities: a softmax over the class prompts of each image's cosine similarity.

Every classification run has them (the image embeddings and one text embedding per class prompt), so the
label-free rule, the cleanlab-style baselines and the suggested labels read them without a trained
classifier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lemon.core.npy import release

if TYPE_CHECKING:
    from lemon.data.features import Features


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


#: rows per block of :func:`zero_shot_columns` (a block's (rows, C) logits stay small at C = 1,000)
COLUMN_BLOCK = 16_384


def zero_shot_columns(
    img: np.ndarray,
    prompts: np.ndarray,
    observed: np.ndarray,
    temperature: float,
    block: int = COLUMN_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) argmax class ids and (n,) zero-shot probabilities of the ``observed`` class ids, computed
    block by block (memory O(block x C); a memory-mapped ``img`` keeps about one block resident):
    scores.csv's ``zero_shot_label`` and ``zero_shot_prob``."""
    observed = np.asarray(observed, dtype=np.int64)
    n = len(observed)
    label, prob = np.empty(n, np.int64), np.empty(n, np.float64)
    p = np.asarray(prompts, dtype=np.float32).T
    for start in range(
        0, n, block
    ):  # float32 with the max subtracted: exact to ~1e-7, half the time
        stop = min(n, start + block)
        e = np.asarray(img[start:stop], dtype=np.float32) @ p
        e *= np.float32(1.0 / temperature)
        e -= e.max(axis=1, keepdims=True)
        np.exp(e, out=e)
        label[start:stop] = e.argmax(axis=1)
        at = e[np.arange(stop - start), observed[start:stop]]
        prob[start:stop] = at / e.sum(axis=1, dtype=np.float64)
        release(img, start, stop)
    return label, prob


def zero_shot_outputs(features: Features, split: str, temperature: float) -> dict[str, np.ndarray]:
    """scores.csv's zero-shot columns of one split of a classification run with class prompts:
    ``zero_shot_label`` (the argmax class id, as ``observed_label``) and ``zero_shot_prob`` (the zero-shot
    probability of the observed label); {} without class prompts or class-id labels."""
    q, prompts = features.splits[split], features.label_prompt_txt
    observed = np.asarray(q.observed)
    if prompts is None or features.task != "classification" or observed.dtype.kind not in "iu":
        return {}
    if len(observed) and (observed.min() < 0 or observed.max() >= len(prompts)):
        return {}
    label, prob = zero_shot_columns(q.img, prompts, observed, temperature)
    return {"zero_shot_label": label, "zero_shot_prob": prob}
