"""Evaluation: AUROC/AUPRC, and F1 & friends at thresholds chosen on val and applied to test.

Thresholds (a sample is flagged when ``score >= threshold``):
- ``optimal``: maximises val F1, found exactly (sort once, cumulative counts) — the one definition of
  "best F1" in the project, also used by hyper-parameter selection;
- ``prevalence``: flags the val mislabel rate;
- ``heuristic``: label-free, the median of the local minima of a Gaussian KDE of the val scores on 1,000
  grid points (one minimum -> it; none -> median of >= 2 local maxima, else the mean), as the original;
- ``label_free``: needs no labels at all: it flags the estimated fraction of mislabelled pairs, estimated
  from class probabilities (cleanlab's confident joint on zero-shot probabilities) or from the scores of
  deliberately mismatched pairs (:mod:`lemon.method.labelfree`, fitted on every scored split, with an
  interval). Its per-split count is also written as ``{split}/flagged_label_free``.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def best_f1(
    scores: np.ndarray | torch.Tensor, y: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact best F1 over all thresholds, for each row of a batch of score vectors.

    Parameters
    ----------
    scores : (B, n) or (n,) scores, higher = more likely mislabelled
    y : (n,) bool/0-1 ground truth (1 = mislabelled)
    weights : (n,) how many pairs each one stands for (default 1): F1 of the weighted counts, e.g. an
        audit sample standing for every pair nobody reviewed (:mod:`lemon.method.reviewed`)

    Returns
    -------
    f1 : (B,) best F1 per row (0 when y has no positives)
    threshold : (B,) a threshold reaching it: midway between the lowest flagged score and the next
        lower one (the largest margin on both sides), or the minimum score when everything is flagged.
    """
    import torch

    s = torch.as_tensor(scores)
    if not s.is_floating_point():
        s = (
            s.double()
        )  # float32 scores are sorted as they are (the search's speed); others in float64
    single = s.ndim == 1
    s = s.reshape(1, -1) if single else s
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64)).to(
        s.dtype
    )  # 0/1 counts: exact in float32 too
    n = s.shape[1]
    s_sorted, order = torch.sort(s, dim=1, descending=True)
    if weights is None:
        tp = torch.cumsum(yt[order], dim=1)
        n_flagged = torch.arange(1, n + 1, dtype=s.dtype)
        f1 = 2 * tp / (n_flagged + yt.sum())
    else:
        wt = torch.as_tensor(np.asarray(weights, dtype=np.float64)).to(s.dtype)
        tp = torch.cumsum((wt * yt)[order], dim=1)
        f1 = 2 * tp / (torch.cumsum(wt[order], dim=1) + (wt * yt).sum())
    # a cut is only reachable after the last of a run of tied scores
    reachable = torch.ones_like(f1, dtype=torch.bool)
    reachable[:, :-1] = s_sorted[:, :-1] > s_sorted[:, 1:]
    f1 = torch.where(reachable, f1, torch.full_like(f1, -1.0))
    best = torch.argmax(f1, dim=1)
    rows = torch.arange(len(s))
    upper = s_sorted[rows, best]
    lower = s_sorted[rows, torch.clamp(best + 1, max=n - 1)]
    thr = torch.where(best < n - 1, (upper + lower) / 2, upper)
    f1_best = torch.clamp(f1[rows, best], min=0.0)
    f1_np, thr_np = f1_best.numpy(), thr.numpy()
    return (f1_np[0], thr_np[0]) if single else (f1_np, thr_np)


def prevalence_threshold(scores: np.ndarray, prevalence: float) -> float:
    """Threshold flagging round(prevalence * n) samples (midway between the flagged and the next score)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    m = int(round(prevalence * len(s)))
    if m <= 0:
        return float(np.nextafter(s[0], np.inf))
    if m >= len(s):
        return float(s[-1])
    return float((s[m - 1] + s[m]) / 2)


def heuristic_threshold(scores: np.ndarray) -> float:
    """Label-free threshold from the valleys of a Gaussian KDE of the scores (the original's rule)."""
    s = np.asarray(scores, dtype=np.float64)
    if np.ptp(s) == 0:
        return float(s.mean())
    grid = np.linspace(s.min(), s.max(), 1000)
    from scipy.signal import argrelextrema
    from scipy.stats import gaussian_kde

    density = gaussian_kde(s).evaluate(grid)
    minima = grid[argrelextrema(density, np.less)]
    if len(minima) > 1:
        return float(np.median(minima))
    if len(minima) == 1:
        return float(minima[0])
    maxima = grid[argrelextrema(density, np.greater)]
    return float(np.median(maxima)) if len(maxima) >= 2 else float(s.mean())


def select_thresholds(
    val_scores: np.ndarray, val_is_mislabel: np.ndarray | None, label_free: float | None = None
) -> dict[str, float]:
    """The thresholds, chosen on val (only ``heuristic`` without val labels), plus the ``label_free`` one
    when given (fitted without labels by :func:`lemon.method.labelfree.label_free_rule`)."""
    thresholds = {"heuristic": heuristic_threshold(val_scores)}
    if label_free is not None:
        thresholds["label_free"] = float(label_free)
    if val_is_mislabel is not None:
        y = np.asarray(val_is_mislabel, dtype=bool)
        thresholds["optimal"] = float(best_f1(val_scores, y)[1])
        thresholds["prevalence"] = prevalence_threshold(val_scores, float(y.mean()))
    return thresholds


def binary_metrics(y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Confusion counts and rates of flags ``flagged`` against truth ``y`` (1 = mislabelled)."""
    y = np.asarray(y, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    tp = int(np.sum(y & flagged))
    fp = int(np.sum(~y & flagged))
    fn = int(np.sum(y & ~flagged))
    tn = int(np.sum(~y & ~flagged))

    def div(a, b):
        return a / b if b else 0.0

    tpr, tnr = div(tp, tp + fn), div(tn, tn + fp)
    return {
        "F1": div(2 * tp, 2 * tp + fp + fn),
        "precision": div(tp, tp + fp),
        "recall": tpr,
        "accuracy": div(tp + tn, len(y)),
        "TPR": tpr,
        "FPR": div(fp, fp + tn),
        "balanced_acc": (tpr + tnr) / 2,
        "TP": tp,
        "FP": fp,
        "TN": tn,
        "FN": fn,
        "n_flagged": tp + fp,
        "pred_prevalence": div(tp + fp, len(y)),
    }


def evaluate_split(
    scores: np.ndarray, is_mislabel: np.ndarray | None, thresholds: dict[str, float], split: str
) -> dict[str, float | None]:
    """Flat metrics ``{split}/{name}`` for one split at fixed thresholds."""
    scores = np.asarray(scores, dtype=np.float64)
    out: dict[str, float | None] = {f"{split}/n": len(scores)}
    for name, thr in thresholds.items():
        out[f"{split}/threshold_{name}"] = thr
        out[f"{split}/n_flagged_{name}"] = int(np.sum(scores >= thr))
    if "label_free" in thresholds:
        out[f"{split}/flagged_label_free"] = out[f"{split}/n_flagged_label_free"]
    if is_mislabel is None:
        return out
    y = np.asarray(is_mislabel, dtype=bool)
    out[f"{split}/prevalence"] = float(y.mean())
    if y.all() or not y.any():
        warnings.warn(
            f"split '{split}' has a single class (all {'mislabelled' if y.all() else 'clean'}); "
            "AUROC/AUPRC are reported as null.",
            stacklevel=2,
        )
        out[f"{split}/AUROC"] = out[f"{split}/AUPRC"] = None
    else:
        from sklearn.metrics import average_precision_score, roc_auc_score

        out[f"{split}/AUROC"] = float(roc_auc_score(y, scores))
        out[f"{split}/AUPRC"] = float(average_precision_score(y, scores))
    for name, thr in thresholds.items():
        for key, value in binary_metrics(y, scores >= thr).items():
            out[f"{split}/{key}_{name}"] = value
    return out
