"""Python API for people who bring their own embeddings (cleanlab-style)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from lemon.errors import LemonError
from lemon.evaluate import select_thresholds
from lemon.features import Features, SplitFeatures
from lemon.methods import DIST_TYPES, HPARAM_NAMES, check_hparam_names, check_k
from lemon.scorers.base import ScorerOptions, ScoringContext, to_quality
from lemon.scorers.lemon import LemonScorer


def find_label_issues(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    labels_or_texts: Sequence,
    *,
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
    """Score every image–text pair for label errors with LEMoN; the data set is its own reference set.

    Parameters
    ----------
    image_embeddings : (n, d) array
        Image embeddings (any norm; L2-normalised here).
    text_embeddings : (n, d) array
        Embedding of each pair's text: the caption, or the prompt of the given class label.
    labels_or_texts : (n,) sequence
        The given class label or caption of each pair (used by ``use_discrete_for_text`` and returned as
        ``given_label``).
    known_issue_idx, known_is_issue : optional (m,) indices into the data and their ground truth
        (True = mislabelled). When given (with both kinds present), hyper-parameters are selected to
        maximise F1 on them (LEMoN_OPT) and the threshold is the best-F1 one; otherwise the paper's fixed
        setting LEMoN_FIX (k=30, cosine, beta=gamma=5, tau_1=0.1, tau_2=5) and a label-free threshold.
    k : number of neighbours (k < n).
    dist_type : 'cosine' or 'euclidean' (squared).
    use_discrete_for_text : text distance = 1[given labels differ] (classification).
    hparams : fixed beta, gamma, tau_1_n, tau_2_n, tau_1_m, tau_2_m (any subset; the rest selected or fixed).
    threshold : 'auto' (best-F1 on the known samples, else the heuristic), 'optimal', 'prevalence',
        'heuristic', or a number; flags ``lemon_score >= threshold``.
    knn_backend : 'torch' or 'faiss'.
    seed : seed of the hyper-parameter search.

    Returns
    -------
    pandas.DataFrame, one row per pair (same order as the input):
        ``lemon_score`` (higher = more likely mislabelled), ``label_quality`` (= exp(-lemon_score), lower =
        worse, as cleanlab), the components ``d_mm``, ``s_n``, ``s_m``, ``given_label`` and
        ``is_label_issue`` (bool, at the chosen threshold). ``df.attrs`` holds the hyper-parameters and the
        threshold used.
    """
    img, txt = np.asarray(image_embeddings), np.asarray(text_embeddings)
    labels = np.asarray(labels_or_texts, dtype=object)
    if not (len(img) == len(txt) == len(labels)):
        raise LemonError(
            f"image_embeddings, text_embeddings and labels_or_texts must have the same length, "
            f"got {len(img)}, {len(txt)} and {len(labels)}."
        )
    data = SplitFeatures("train", img, txt, labels.astype(str), labels)
    fixed = {name: float(value) for name, value in (hparams or {}).items()}
    check_hparam_names(fixed)
    splits = {"train": data}
    has_known = known_issue_idx is not None
    if has_known:
        idx = np.asarray(known_issue_idx, dtype=np.int64)
        truth = np.asarray(known_is_issue, dtype=bool) if known_is_issue is not None else None
        if truth is None or len(truth) != len(idx):
            raise LemonError(
                "known_issue_idx and known_is_issue must be given together, with the same length."
            )
        if idx.min(initial=0) < 0 or idx.max(initial=0) >= len(data):
            raise LemonError(f"known_issue_idx must index the data, in [0, {len(data)}).")
        val = data.subset(idx)
        val.is_mislabel, val.reference_row, val.split = truth, idx, "val"
        splits["val"] = val
    if dist_type not in DIST_TYPES:
        raise LemonError(f"Unknown dist_type '{dist_type}'. Available: {', '.join(DIST_TYPES)}.")
    check_k(k, len(data))
    options = ScorerOptions(
        k=k,
        dist_type=dist_type,
        use_discrete_for_text=use_discrete_for_text,
        fixed=fixed,
        select=has_known,
        seed=seed,
    )
    task = "captioning" if isinstance(labels[0], str) else "classification"
    features = Features(task, splits)
    ctx = ScoringContext(features, knn_backend=knn_backend)
    scorer = LemonScorer(options)
    chosen = scorer.fit(ctx)
    out = scorer.score(ctx, "train", chosen)
    if has_known:
        thresholds = select_thresholds(
            scorer.score(ctx, "val", chosen)["score"], splits["val"].is_mislabel
        )
    else:
        thresholds = select_thresholds(out["score"], None)
    thr = _pick_threshold(threshold, thresholds)
    df = pd.DataFrame(
        {
            "lemon_score": out["score"],
            "label_quality": to_quality(out["score"]),
            "d_mm": out["d_mm"],
            "s_n": out["s_n"],
            "s_m": out["s_m"],
            "given_label": labels,
            "is_label_issue": out["score"] >= thr,
        }
    )
    df.attrs.update(
        {
            "hparams": {n: chosen[n] for n in HPARAM_NAMES},
            "selection": chosen["selection"],
            "threshold": thr,
            "thresholds": thresholds,
            "k": k,
        }
    )
    return df


def _pick_threshold(threshold: str | float, thresholds: dict[str, float]) -> float:
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        return float(threshold)
    if threshold == "auto":
        return thresholds.get("optimal", thresholds["heuristic"])
    if threshold in thresholds:
        return thresholds[threshold]
    raise LemonError(
        f"threshold must be a number or one of auto, {', '.join(thresholds)}; got {threshold!r} "
        "('optimal'/'prevalence' need known_issue_idx)."
    )
