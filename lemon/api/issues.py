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

import difflib
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from lemon.api.inputs import (
    check_embeddings,
    check_known,
    check_labels,
    class_labels,
    embed_inputs,
)
from lemon.core.errors import LemonError
from lemon.data.features import Features, SplitFeatures
from lemon.method.evaluate import select_thresholds
from lemon.method.hparams import DIST_TYPES, HPARAM_NAMES, check_hparam_names
from lemon.method.labelfree import label_free_rule
from lemon.method.suggest import suggestion_columns
from lemon.scorers.base import ScoringContext, to_quality
from lemon.scorers.lemon import LemonOptions, LemonScorer

R = TypeVar("R")
#: run_lemon flags whose API argument is named otherwise (suggested when the flag's name is given)
CLI_NAMES = {"knn_k": "k", "clip_model": "model", "fixed_hparams": "hparams"}
#: ``return_indices_ranked_by`` value -> (column, whether the most severe pair has the highest value)
RANKINGS: dict[str, tuple[str, bool]] = {
    "lemon_score": ("lemon_score", True),
    "label_quality": ("label_quality", False),
    "d_mm": ("d_mm", True),
}


def _checked_arguments(
    refused: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorator: an argument the function does not take is a one-line TypeError naming it, the closest
    valid name and every valid one (``refused``: names with their own reason). The signature is kept, so
    ``help()`` and IDEs show every option."""

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(func)
        names = list(signature.parameters)

        @functools.wraps(func)
        def checked(*args: Any, **kwargs: Any) -> R:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as err:
                unknown = [name for name in kwargs if name not in signature.parameters]
                if unknown and refused and unknown[0] in refused:
                    raise TypeError(
                        f"{func.__name__}() takes no {unknown[0]}: {refused[unknown[0]]}"
                    ) from None
                if unknown:
                    close = [CLI_NAMES[unknown[0]]] if unknown[0] in CLI_NAMES else []
                    close = close or difflib.get_close_matches(unknown[0], names, n=1)
                    hint = f" Did you mean {close[0]}?" if close else ""
                    raise TypeError(
                        f"{func.__name__}() got an unknown argument {unknown[0]!r}.{hint} Valid: "
                        f"{', '.join(names)}."
                    ) from None
                raise TypeError(f"{func.__name__}(): {err}. Valid: {', '.join(names)}.") from None
            return func(*args, **kwargs)

        return checked

    return decorate


@_checked_arguments()
def score_pairs(
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    labels: Sequence | np.ndarray | None = None,
    *,
    images: Sequence[Any] | None = None,
    texts: Sequence[str] | None = None,
    model: Any = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    known_issue_idx: Sequence[int] | np.ndarray | None = None,
    known_is_issue: Sequence[bool] | np.ndarray | None = None,
    k: int = 30,
    dist_type: str = "cosine",
    use_discrete_for_text: bool = False,
    hparams: Mapping[str, float] | None = None,
    threshold: str | float = "auto",
    knn_backend: str = "torch",
    seed: int = 0,
    task: str = "auto",
) -> pd.DataFrame:
    """Score every image–text pair with LEMoN; one DataFrame row per pair, in input order.

    The data set is its own reference set: each pair is compared with its nearest neighbours among the
    others. Without verified pairs LEMoN runs with the paper's fixed setting (LEMoN_FIX) and flags with
    the label-free rule; with ``known_issue_idx`` and ``known_is_issue`` it selects its hyper-parameters
    and threshold on them (LEMoN_OPT).

    Parameters
    ----------
    image_embeddings : np.ndarray, optional
      ``(n, d)`` image embeddings (any norm; normalised here). Give ``images`` instead to embed raw images.
    text_embeddings : np.ndarray, optional
      ``(n, d)`` text embeddings from the same model. Give ``texts`` instead to embed raw texts.
    labels : array_like, optional
      ``(n,)`` the given caption (str) or class id (int) of each pair; default: ``texts``.
    images : sequence of str, os.PathLike or PIL.Image.Image, optional
      ``n`` image files or PIL images, embedded by ``model`` (cached like run_lemon's embeddings).
    texts : sequence of str, optional
      ``n`` texts to embed (captions, or class prompts such as ``'A photo of a cat'``); default: the
      labels when they are strings.
    model : str or lemon.embed.base.Embedder, optional
      The embedder of raw inputs: a ``--clip_model`` value (``'huggingface_clip'``,
      ``'open_clip:ViT-B-32/openai'``, a checkpoint folder) or an Embedder; default ``huggingface_clip``.
    cache_dir : str or os.PathLike, optional
      Embedding cache root (default: ``$LEMON_CACHE_DIR``, else ``~/.cache/lemon/cache``).
    device : str, default "auto"
      Where raw inputs are embedded: ``'auto'`` (CUDA when present), ``'cpu'``, ``'cuda'``, ...
    batch_size : int, default 64
      Images or texts embedded per batch.
    num_workers : int, default 0
      DataLoader workers decoding images.
    known_issue_idx : array_like of int, optional
      ``(m,)`` row indices of verified pairs; give with ``known_is_issue``.
    known_is_issue : array_like of bool, optional
      ``(m,)`` their truth (True or 1 = mislabelled). With both kinds present, hyper-parameters and the
      threshold are selected on them.
    k : int, default 30
      Neighbours each pair is compared with (``1 <= k < n``).
    dist_type : {"cosine", "euclidean"}, default "cosine"
      Distance between embeddings: ``1 - a.b`` or the squared euclidean distance.
    use_discrete_for_text : bool, default False
      Text distance = 1 when two pairs' texts differ, else 0 (for class labels).
    hparams : dict, optional
      Hyper-parameters to fix rather than select: any of beta, gamma, tau_1_n, tau_2_n, tau_1_m,
      tau_2_m.
    threshold : str or float, default "auto"
      Flags ``lemon_score >= threshold``: ``'auto'`` (best F1 on the verified pairs, else
      ``'label_free'``), ``'label_free'``, ``'optimal'``, ``'prevalence'``, ``'heuristic'`` (the
      original's KDE valley), or a number.
    knn_backend : str, default "torch"
      Neighbour search: ``'torch'`` (exact), ``'faiss'``, ``'torch_fp16'``, ... as run_lemon's
      ``--knn_backend``.
    seed : int, default 0
      Seed of the hyper-parameter search and of the label-free rule.
    task : {"auto", "classification", "captioning"}, default "auto"
      What string ``labels`` given without ``texts`` are: ``'auto'`` reads them as class names when they
      repeat (fewer distinct values than half the pairs, as run_lemon reads a label column: prompts
      ``'A photo of a <name>'``), with a warning naming the count, else as captions.

    Returns
    -------
    pandas.DataFrame
      One row per pair: ``lemon_score`` (higher = more likely mislabelled), ``label_quality``
      (``exp(-lemon_score)`` in [0, 1], lower = worse, as cleanlab), the score's terms ``d_mm``,
      ``s_n``, ``s_m``, ``given_label``, the suggested fix (``suggested_label`` +
      ``suggestion_confidence`` for class labels: the most likely other class; ``suggested_text`` +
      ``suggestion_similarity`` for captions: another pair's caption that best matches the image) and
      ``is_label_issue``. ``df.attrs`` holds the hyper-parameters, the threshold and its rule, and the
      ``estimated_noise_rate`` with the label-free rule's details.

    Examples
    --------
    >>> df = lemon.score_pairs(image_embeddings, text_embeddings, captions)  # doctest: +SKIP
    >>> df.sort_values("lemon_score", ascending=False).head()  # doctest: +SKIP
    """
    return _score(**locals(), flags=True)


@_checked_arguments()
def find_label_issues(
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    labels: Sequence | np.ndarray | None = None,
    *,
    return_indices_ranked_by: str | None = None,
    images: Sequence[Any] | None = None,
    texts: Sequence[str] | None = None,
    model: Any = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    known_issue_idx: Sequence[int] | np.ndarray | None = None,
    known_is_issue: Sequence[bool] | np.ndarray | None = None,
    k: int = 30,
    dist_type: str = "cosine",
    use_discrete_for_text: bool = False,
    hparams: Mapping[str, float] | None = None,
    threshold: str | float = "auto",
    knn_backend: str = "torch",
    seed: int = 0,
    task: str = "auto",
) -> np.ndarray:
    """Find the mislabelled image–text pairs.

    Without verified pairs the label-free rule estimates the fraction of mislabelled pairs and flags that
    many; with ``known_issue_idx`` and ``known_is_issue`` the threshold is the best F1 on them.

    Parameters
    ----------
    image_embeddings : np.ndarray, optional
      ``(n, d)`` image embeddings (any norm). Give ``images`` instead to embed raw images.
    text_embeddings : np.ndarray, optional
      ``(n, d)`` text embeddings from the same model. Give ``texts`` instead to embed raw texts.
    labels : array_like, optional
      ``(n,)`` the given caption (str) or class id (int) of each pair; default: ``texts``.
    return_indices_ranked_by : {None, "lemon_score", "label_quality", "d_mm"}, default None
      None: return a boolean mask. Otherwise return the indices of the flagged pairs, most severe first
      by this column of :func:`score_pairs`.
    images, texts, model, cache_dir, device, batch_size, num_workers
      Raw inputs and how they are embedded, as in :func:`score_pairs`.
    known_issue_idx : array_like of int, optional
      ``(m,)`` row indices of verified pairs; give with ``known_is_issue``.
    known_is_issue : array_like of bool, optional
      ``(m,)`` their truth (True or 1 = mislabelled).
    k : int, default 30
      Neighbours each pair is compared with (``1 <= k < n``).
    dist_type : {"cosine", "euclidean"}, default "cosine"
      Distance between embeddings.
    use_discrete_for_text : bool, default False
      Text distance = 1 when two pairs' texts differ, else 0.
    hparams : dict, optional
      Hyper-parameters to fix rather than select (beta, gamma, tau_1_n, tau_2_n, tau_1_m, tau_2_m).
    threshold : str or float, default "auto"
      Which pairs are flagged: ``'auto'``, ``'label_free'``, ``'optimal'``, ``'prevalence'``,
      ``'heuristic'`` or a number, as in :func:`score_pairs`.
    knn_backend : str, default "torch"
      Neighbour search, as run_lemon's ``--knn_backend``.
    seed : int, default 0
      Seed of the hyper-parameter search and of the label-free rule.
    task : {"auto", "classification", "captioning"}, default "auto"
      What string ``labels`` given without ``texts`` are, as in :func:`score_pairs`.

    Returns
    -------
    np.ndarray
      A boolean mask of length n (True = label issue), or with ``return_indices_ranked_by`` the
      integer indices of the flagged pairs, most severe first.

    Examples
    --------
    >>> issues = lemon.find_label_issues(image_embeddings, text_embeddings, captions)  # doctest: +SKIP
    >>> ranked = lemon.find_label_issues(  # doctest: +SKIP
    ...     image_embeddings, text_embeddings, captions, return_indices_ranked_by="lemon_score"
    ... )
    """
    options = {n: v for n, v in locals().items() if n != "return_indices_ranked_by"}
    if return_indices_ranked_by is not None and return_indices_ranked_by not in RANKINGS:
        raise LemonError(
            f"return_indices_ranked_by must be None or one of {', '.join(RANKINGS)}, got "
            f"{return_indices_ranked_by!r}."
        )
    df = _score(**options)
    mask = df["is_label_issue"].to_numpy(dtype=bool)
    if return_indices_ranked_by is None:
        return mask
    column, descending = RANKINGS[return_indices_ranked_by]
    rows = np.flatnonzero(mask)
    values = df[column].to_numpy()[rows]
    return rows[np.argsort(-values if descending else values, kind="stable")]


@_checked_arguments(
    refused={
        "threshold": "label quality scores are not thresholded (one score per pair); to flag pairs "
        "use find_label_issues(..., threshold=...)."
    }
)
def get_label_quality_scores(
    image_embeddings: np.ndarray | None = None,
    text_embeddings: np.ndarray | None = None,
    labels: Sequence | np.ndarray | None = None,
    *,
    images: Sequence[Any] | None = None,
    texts: Sequence[str] | None = None,
    model: Any = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    known_issue_idx: Sequence[int] | np.ndarray | None = None,
    known_is_issue: Sequence[bool] | np.ndarray | None = None,
    k: int = 30,
    dist_type: str = "cosine",
    use_discrete_for_text: bool = False,
    hparams: Mapping[str, float] | None = None,
    knn_backend: str = "torch",
    seed: int = 0,
    task: str = "auto",
) -> np.ndarray:
    """Label quality score of each image–text pair, lower = more likely mislabelled (cleanlab's direction).

    The score is ``exp(-lemon_score)`` in [0, 1]: it ranks exactly as LEMoN's score, and one pair's value
    depends on the others only through its neighbours. No threshold is involved.

    Parameters
    ----------
    image_embeddings : np.ndarray, optional
      ``(n, d)`` image embeddings (any norm). Give ``images`` instead to embed raw images.
    text_embeddings : np.ndarray, optional
      ``(n, d)`` text embeddings from the same model. Give ``texts`` instead to embed raw texts.
    labels : array_like, optional
      ``(n,)`` the given caption (str) or class id (int) of each pair; default: ``texts``.
    images, texts, model, cache_dir, device, batch_size, num_workers
      Raw inputs and how they are embedded, as in :func:`score_pairs`.
    known_issue_idx : array_like of int, optional
      ``(m,)`` row indices of verified pairs; give with ``known_is_issue``.
    known_is_issue : array_like of bool, optional
      ``(m,)`` their truth (True or 1 = mislabelled): hyper-parameters are selected on them.
    k : int, default 30
      Neighbours each pair is compared with (``1 <= k < n``).
    dist_type : {"cosine", "euclidean"}, default "cosine"
      Distance between embeddings.
    use_discrete_for_text : bool, default False
      Text distance = 1 when two pairs' texts differ, else 0.
    hparams : dict, optional
      Hyper-parameters to fix rather than select (beta, gamma, tau_1_n, tau_2_n, tau_1_m, tau_2_m).
    knn_backend : str, default "torch"
      Neighbour search, as run_lemon's ``--knn_backend``.
    seed : int, default 0
      Seed of the hyper-parameter search.
    task : {"auto", "classification", "captioning"}, default "auto"
      What string ``labels`` given without ``texts`` are, as in :func:`score_pairs`.

    Returns
    -------
    np.ndarray
      ``(n,)`` float scores in [0, 1], lower = worse.

    Examples
    --------
    >>> quality = lemon.get_label_quality_scores(image_embeddings, text_embeddings, captions)  # doctest: +SKIP
    >>> worst_first = quality.argsort()  # doctest: +SKIP
    """
    df = _score(**locals(), threshold="auto", flags=False)
    return df["label_quality"].to_numpy()


def _length(value: Any, name: str) -> int:
    shape = np.shape(value) if not isinstance(value, (list, tuple)) else (len(value),)
    if len(shape) == 0:
        raise LemonError(f"{name} must hold one entry per pair, got a scalar.")
    return int(shape[0])


def _inputs(
    image_embeddings: Any,
    text_embeddings: Any,
    labels: Any,
    images: Sequence[Any] | None,
    texts: Sequence[str] | None,
    model: Any,
    cache_dir: str | os.PathLike | None,
    device: str,
    batch_size: int,
    num_workers: int,
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
    image_embeddings: Any,
    text_embeddings: Any,
    labels: Any,
    images: Sequence[Any] | None,
    texts: Sequence[str] | None,
    model: Any,
    cache_dir: str | os.PathLike | None,
    device: str,
    batch_size: int,
    num_workers: int,
    known_issue_idx: Any,
    known_is_issue: Any,
    k: int,
    dist_type: str,
    use_discrete_for_text: bool,
    hparams: Mapping[str, float] | None,
    threshold: str | float,
    knn_backend: str,
    seed: int,
    task: str,
    flags: bool = True,
) -> pd.DataFrame:
    labels, texts, class_names = class_labels(labels, texts, text_embeddings, task)
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
    shown_texts = labels.astype(str) if class_names is None else np.asarray(texts, dtype=object)
    data = SplitFeatures("train", img, txt, shown_texts, labels)
    splits = {"train": data}
    if known is not None:
        val = data.subset(known[0])
        val.is_mislabel, val.reference_row, val.split = known[1], known[0], "val"
        splits["val"] = val
    options = LemonOptions(
        k=k,
        dist_type=dist_type,
        use_discrete_for_text=use_discrete_for_text,
        fixed=fixed,
        select=known is not None,
        seed=seed,
    )
    features = Features(task, splits, class_names=class_names)
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
            "given_label": labels
            if class_names is None
            else np.asarray(class_names, dtype=object)[labels.astype(np.int64)],
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
        warnings.warn(f"label-free rule: {note}", stacklevel=4)  # user > wrapper > API > here
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
