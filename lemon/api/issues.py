"""Python API, cleanlab-style: which image–text pairs are mislabelled, from embeddings or raw inputs.

- :func:`find_label_issues`: a boolean mask (True = label issue), or the flagged indices ranked by
  severity with ``return_indices_ranked_by``;
- :func:`get_label_quality_scores`: one score in [0, 1] per pair, lower = worse;
- :func:`score_pairs`: the full DataFrame (scores, their terms, flags) with the settings in ``df.attrs``.

The data set is its own reference set. Without verified pairs LEMoN runs with the paper's fixed setting
(LEMoN_FIX) and flags with the label-free rule (:mod:`lemon.method.labelfree`: it estimates the fraction of
mislabelled pairs and flags that many); with a few verified pairs (``known_issue_idx``,
``known_is_issue``) it selects hyper-parameters and threshold on them (LEMoN_OPT).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lemon.api.inputs import check_embeddings, check_known, check_labels, embed_inputs
from lemon.core.errors import LemonError
from lemon.data.features import Features, SplitFeatures
from lemon.method.evaluate import select_thresholds
from lemon.method.hparams import DIST_TYPES, HPARAM_NAMES, check_hparam_names
from lemon.method.labelfree import label_free_rule
from lemon.method.suggest import suggestion_columns
from lemon.scorers.base import ScorerOptions, ScoringContext, to_quality
from lemon.scorers.lemon import LemonScorer

#: ``return_indices_ranked_by`` value -> (column, whether the most severe pair has the highest value)
RANKINGS: dict[str, tuple[str, bool]] = {
    "lemon_score": ("lemon_score", True),
    "label_quality": ("label_quality", False),
    "d_mm": ("d_mm", True),
}


def score_pairs(
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    labels: Sequence | None = None,
    *,
    images: Sequence[Any] | None = None,
    texts: Sequence[str] | None = None,
    model: Any = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    known_issue_idx: Sequence[int] | None = None,
    known_is_issue: Sequence[bool] | None = None,
    k: int = 30,
    dist_type: str = "cosine",
    use_discrete_for_text: bool = False,
    hparams: dict[str, float] | None = None,
    threshold: str | float = "auto",
    knn_backend: str = "torch",
    seed: int = 0,
) -> pd.DataFrame:
    """Score every image–text pair with LEMoN; one DataFrame row per pair, in input order.

    Parameters
    ----------
    image_embeddings, text_embeddings : (n, d) arrays (any norm), or give the raw inputs instead:
    images : n image file paths or PIL images, embedded by ``model`` (cached like run_lemon's)
    texts : n texts to embed (captions, or class prompts such as 'A photo of a cat'); default: the
        labels when they are strings
    labels : (n,) the given caption (str) or class id (int) of each pair; default: ``texts``
    model : a ``--clip_model`` value ('huggingface_clip', 'open_clip:ViT-B-32/openai', a checkpoint
        folder) or an Embedder; cache_dir, device, batch_size, num_workers : how raw inputs are embedded
    known_issue_idx, known_is_issue : optional (m,) row indices and their truth (True = mislabelled, bool
        or 0/1); with both kinds present, hyper-parameters and threshold are selected on them
    k, dist_type, use_discrete_for_text, hparams, knn_backend, seed : LEMoN's settings (fixed ``hparams``:
        any of beta, gamma, tau_1_n, tau_2_n, tau_1_m, tau_2_m)
    threshold : 'auto' (best F1 on the verified pairs, else 'label_free'), 'label_free', 'optimal',
        'prevalence', 'heuristic' (the original's KDE valley), or a number; flags ``lemon_score >= it``

    Returns
    -------
    pandas.DataFrame with ``lemon_score`` (higher = more likely mislabelled), ``label_quality``
    (exp(-lemon_score) in [0, 1], lower = worse, as cleanlab), ``d_mm``, ``s_n``, ``s_m``, ``given_label``,
    the suggested fix (``suggested_label`` + ``suggestion_confidence`` for class ids: the most likely other
    class; ``suggested_text`` + ``suggestion_similarity`` for captions: another pair's caption that best
    matches the image) and ``is_label_issue``; ``df.attrs`` holds the hyper-parameters, the threshold and its rule, and the
    ``estimated_noise_rate`` with the label-free rule's details.
    """
    return _score(**_arguments(locals()), flags=True)


def find_label_issues(
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    labels: Sequence | None = None,
    *,
    return_indices_ranked_by: str | None = None,
    **options: Any,
) -> np.ndarray:
    """Which pairs are mislabelled: a boolean mask over the pairs (True = label issue), or, with
    ``return_indices_ranked_by`` ('lemon_score', 'label_quality' or 'd_mm'), the indices of the flagged
    pairs, most severe first.

    Takes the inputs and ``options`` of :func:`score_pairs` (embeddings or ``images=``/``texts=``/
    ``model=``, ``known_issue_idx``/``known_is_issue``, ``threshold``, ...). Without verified pairs the
    label-free rule decides how many pairs to flag.
    """
    if return_indices_ranked_by is not None and return_indices_ranked_by not in RANKINGS:
        raise LemonError(
            f"return_indices_ranked_by must be None or one of {', '.join(RANKINGS)}, got "
            f"{return_indices_ranked_by!r}."
        )
    df = _score(**_arguments({**options, **_positional(image_embeddings, text_embeddings, labels)}))
    mask = df["is_label_issue"].to_numpy(dtype=bool)
    if return_indices_ranked_by is None:
        return mask
    column, descending = RANKINGS[return_indices_ranked_by]
    rows = np.flatnonzero(mask)
    values = df[column].to_numpy()[rows]
    return rows[np.argsort(-values if descending else values, kind="stable")]


def get_label_quality_scores(
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    labels: Sequence | None = None,
    **options: Any,
) -> np.ndarray:
    """(n,) label quality of each pair in [0, 1], lower = worse: ``exp(-lemon_score)``, so it ranks
    exactly as LEMoN's score, and one pair's value does not depend on the others' (only through the
    neighbours). Takes the inputs and ``options`` of :func:`score_pairs`."""
    options.pop("threshold", None)
    df = _score(
        **_arguments({**options, **_positional(image_embeddings, text_embeddings, labels)}),
        flags=False,
    )
    return df["label_quality"].to_numpy()


def _positional(img: Any, txt: Any, labels: Any) -> dict[str, Any]:
    return {"image_embeddings": img, "text_embeddings": txt, "labels": labels}


def _arguments(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` completed with score_pairs' defaults; an unknown option is a one-line error."""
    import inspect

    params = inspect.signature(score_pairs).parameters
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise LemonError(f"Unknown option(s) {unknown}; allowed: {', '.join(params)}.")
    return {name: given.get(name, p.default) for name, p in params.items()}


def _length(value: Any, name: str) -> int:
    shape = np.shape(value) if not isinstance(value, (list, tuple)) else (len(value),)
    if len(shape) == 0:
        raise LemonError(f"{name} must hold one entry per pair, got a scalar.")
    return int(shape[0])


def _inputs(
    image_embeddings,
    text_embeddings,
    labels,
    images,
    texts,
    model,
    cache_dir,
    device,
    batch_size,
    num_workers,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(image embeddings, text embeddings, labels, task), every input checked, raw ones embedded."""
    for array, raw, what in ((image_embeddings, images, "image"), (text_embeddings, texts, "text")):
        if array is not None and raw is not None:
            raise LemonError(f"give {what}_embeddings or {what}s=, not both.")
    if image_embeddings is None and images is None:
        raise LemonError("no image input: give image_embeddings or images= (paths or PIL images).")
    if labels is None and texts is None:
        raise LemonError("no labels: give the caption or class id of each pair (labels=).")
    given = {
        "images" if images is not None else "image_embeddings": (
            images if images is not None else image_embeddings
        ),
        "texts" if texts is not None else "text_embeddings": (
            texts if texts is not None else text_embeddings
        ),
        "labels": labels if labels is not None else texts,
    }
    given = {name: v for name, v in given.items() if v is not None}
    lengths = {name: _length(v, name) for name, v in given.items()}
    names, values = list(lengths), [str(v) for v in lengths.values()]
    if len(set(lengths.values())) > 1:
        raise LemonError(
            f"{', '.join(names[:-1])} and {names[-1]} must have the same length, got "
            f"{', '.join(values[:-1])} and {values[-1]}."
        )
    if values[0] == "0":
        raise LemonError(
            f"no pairs: {', '.join(names[:-1])} and {names[-1]} are empty; pass at least k + 1 "
            "pairs (k = the neighbours each pair is compared with)."
        )
    labels, task = check_labels(given["labels"])
    if text_embeddings is None and texts is None:
        if task != "captioning":
            raise LemonError(
                "no text input: give text_embeddings or texts= (for class ids, one prompt per pair "
                "such as 'A photo of a cat')."
            )
        texts = list(labels)  # the captions are the texts
    if images is not None or texts is not None:
        img, txt = embed_inputs(images, texts, model, cache_dir, device, batch_size, num_workers)
        image_embeddings = img if img is not None else image_embeddings
        text_embeddings = txt if txt is not None else text_embeddings
    img = check_embeddings(image_embeddings, "image_embeddings")
    txt = check_embeddings(text_embeddings, "text_embeddings")
    if img.shape[1] != txt.shape[1]:
        raise LemonError(
            f"image and text embeddings must have the same dimension, got {img.shape[1]} and "
            f"{txt.shape[1]} (embed both with the same model)."
        )
    return img, txt, labels, task


def _score(
    *,
    image_embeddings,
    text_embeddings,
    labels,
    images,
    texts,
    model,
    cache_dir,
    device,
    batch_size,
    num_workers,
    known_issue_idx,
    known_is_issue,
    k,
    dist_type,
    use_discrete_for_text,
    hparams,
    threshold,
    knn_backend,
    seed,
    flags: bool = True,
) -> pd.DataFrame:
    img, txt, labels, task = _inputs(
        image_embeddings,
        text_embeddings,
        labels,
        images,
        texts,
        model,
        cache_dir,
        device,
        batch_size,
        num_workers,
    )
    n = len(labels)
    if dist_type not in DIST_TYPES:
        raise LemonError(f"Unknown dist_type '{dist_type}'. Available: {', '.join(DIST_TYPES)}.")
    if not 1 <= k < n:
        raise LemonError(
            f"k={k} needs more than {k} pairs (a pair is never its own neighbour), got {n}; pass a "
            f"smaller k (1 <= k < {n})."
        )
    fixed = {name: float(value) for name, value in (hparams or {}).items()}
    check_hparam_names(fixed)
    known = check_known(known_issue_idx, known_is_issue, n)
    data = SplitFeatures("train", img, txt, labels.astype(str), labels)
    splits = {"train": data}
    if known is not None:
        val = data.subset(known[0])
        val.is_mislabel, val.reference_row, val.split = known[1], known[0], "val"
        splits["val"] = val
    options = ScorerOptions(
        k=k,
        dist_type=dist_type,
        use_discrete_for_text=use_discrete_for_text,
        fixed=fixed,
        select=known is not None,
        seed=seed,
    )
    features = Features(task, splits)
    ctx = ScoringContext(features, knn_backend=knn_backend)
    scorer = LemonScorer(options)
    chosen = scorer.fit(ctx)
    out = scorer.score(ctx, "train", chosen)
    quality = np.minimum(to_quality(out["score"]), 1.0)
    df = pd.DataFrame(
        {
            "lemon_score": out["score"],
            "label_quality": quality,
            "d_mm": out["d_mm"],
            "s_n": out["s_n"],
            "s_m": out["s_m"],
            "given_label": labels,
            **suggestion_columns(features, out, slice(None)),
        }
    )
    df.attrs.update(
        {"hparams": {n: chosen[n] for n in HPARAM_NAMES}, "selection": chosen["selection"], "k": k}
    )
    if not flags:
        return df
    rule = label_free_rule(scorer, ctx, {"train": out["score"]}, chosen, seed=seed)
    for note in rule.warnings:
        warnings.warn(f"label-free rule: {note}", stacklevel=3)
    if known is not None:
        val_scores = scorer.score(ctx, "val", chosen)["score"]
        thresholds = select_thresholds(val_scores, splits["val"].is_mislabel, rule.threshold)
    else:
        thresholds = select_thresholds(out["score"], None, rule.threshold)
    name, thr = _pick_threshold(threshold, thresholds)
    df["is_label_issue"] = out["score"] >= thr
    df.attrs.update(
        {
            "threshold": thr,
            "threshold_rule": name,
            "thresholds": thresholds,
            "estimated_noise_rate": rule.rate,
            "label_free": rule.info(),
        }
    )
    return df


def _pick_threshold(threshold: str | float, thresholds: dict[str, float]) -> tuple[str, float]:
    """(rule name, value): 'auto' = optimal when verified pairs exist, else label_free."""
    if isinstance(threshold, (int, float, np.number)) and not isinstance(threshold, bool):
        return "given", float(threshold)
    if threshold == "auto":
        name = "optimal" if "optimal" in thresholds else "label_free"
        return name, thresholds[name]
    if threshold in thresholds:
        return str(threshold), thresholds[threshold]
    raise LemonError(
        f"threshold must be a number or one of auto, {', '.join(thresholds)}; got {threshold!r} "
        "('optimal'/'prevalence' need known_issue_idx)."
    )
