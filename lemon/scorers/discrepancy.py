"""Discrepancy and diversity baselines (Thomas & Kovashka 2022, as LEMoN's original
``lib/baselines/discrepancy_baseline.py`` used them). Work on classification and captioning data.

For a query pair (x, y) let M(y) be its k nearest reference texts (the memoised search, self excluded by
index; k = ``--knn_k``) and, for each reference pair j, R(j) its own k nearest reference texts (j itself
excluded). The *second-order text neighbours* of the query are the multiset
S(y) = union over j in M(y) of R(j) (k^2 entries, repeats counted), less any occurrence of the query itself
when it belongs to the reference set. With d the ``--dist_type`` distance on unit vectors:

- ``dis_y`` = mean over l in S(y) of d(y, y_l); ``dis_x`` = mean over l in S(y) of d(x, x_l);
- ``div_y`` = (1/k^2) * sum over a, b in M(y) of d(y_a, y_b); ``div_x`` the same with images x_a, x_b
  (the k self-pairs a = b count, with distance 0, as the original's ``sum / k**2``).

Higher = more likely mislabelled. Because both distances are affine in the dot product of unit vectors
(c (1 - a.b) with c = 1 for cosine, 2 for squared euclidean), each mean collapses to one dot product with a
mean vector e_bar: mean_l d(q, e_l) = c (1 - q.e_bar) and (1/k^2) sum_ab d(e_a, e_b) = c (1 - |e_bar|^2),
so scoring costs O(n k d) instead of O(n k^2 d). Differences from the original: it always used cosine, and
for train queries it kept the query as its own first text neighbour; here self is excluded by index at
both orders.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.features import Features
from lemon.scorers.base import Scorer, ScorerOptions, ScoringContext
from lemon.scorers.registry import SCORERS

SCALE = {"cosine": 1.0, "euclidean": 2.0}  # d(a, b) = SCALE * (1 - a.b) for unit vectors


def _sum_rows(emb: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(n, d) float64 sum over the columns of ``idx`` (n, k) of ``emb[idx[:, t]]``, one column at a time."""
    total = np.zeros((len(idx), emb.shape[1]), dtype=np.float64)
    for t in range(idx.shape[1]):
        total += emb[idx[:, t]]
    return total


class _TextNeighbourhoodScorer(Scorer):
    """Shared code of dis_* (``order = 2``) and div_* (``order = 1``) on modality ``space``."""

    order: ClassVar[int]
    space: ClassVar[str]  # 'img' (x) or 'txt' (y)

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        self._neighbour_sums: np.ndarray | None = None

    def check(self, features: Features) -> None:
        super().check(features)
        if self.order == 2 and self.options.k < 2:
            raise LemonError(
                f"Scorer '{self.name}' needs knn_k >= 2 (with k = 1 a reference query's only "
                f"second-order neighbour can be itself), got {self.options.k}."
            )

    def _second_order_sums(self, ctx: ScoringContext) -> tuple[np.ndarray, np.ndarray]:
        """R (m, k) reference-internal text neighbours and, per reference row j, the sum over R(j)."""
        k = self.options.k
        _, train_idx = ctx.neighbours("train", "txt", k)
        ref_nn = train_idx[ctx.features.reference_index]
        if self._neighbour_sums is None:
            self._neighbour_sums = _sum_rows(getattr(ctx.reference, self.space), ref_nn)
        return ref_nn, self._neighbour_sums

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        k, q = self.options.k, ctx.split(split)
        emb = getattr(ctx.reference, self.space)
        _, idx = ctx.neighbours(split, "txt", k)
        c = SCALE[self.options.dist_type]
        if self.order == 1:
            mean = _sum_rows(emb, idx) / k
            return {"score": c * (1.0 - np.einsum("nd,nd->n", mean, mean))}
        ref_nn, sums = self._second_order_sums(ctx)
        total = _sum_rows(sums, idx)
        count = np.full(len(q), float(k * k))
        rows = ctx.self_rows(split)
        if rows is not None and (rows >= 0).any():
            n_self = sum((ref_nn[idx[:, t]] == rows[:, None]).sum(axis=1) for t in range(k))
            total -= n_self[:, None] * emb[np.maximum(rows, 0)].astype(np.float64)
            count -= n_self
        mean = total / count[:, None]
        own = getattr(q, self.space).astype(np.float64)
        return {"score": c * (1.0 - np.einsum("nd,nd->n", own, mean))}


@SCORERS.register("dis_x")
class DisXScorer(_TextNeighbourhoodScorer):
    """Mean image distance from x to the second-order text neighbours of y."""

    order, space = 2, "img"


@SCORERS.register("dis_y")
class DisYScorer(_TextNeighbourhoodScorer):
    """Mean text distance from y to its second-order text neighbours."""

    order, space = 2, "txt"


@SCORERS.register("div_x")
class DivXScorer(_TextNeighbourhoodScorer):
    """Mean pairwise image distance among the k text neighbours of y."""

    order, space = 1, "img"


@SCORERS.register("div_y")
class DivYScorer(_TextNeighbourhoodScorer):
    """Mean pairwise text distance among the k text neighbours of y."""

    order, space = 1, "txt"
