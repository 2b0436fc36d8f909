"""SimiFeat-style baseline (after Zhu et al. 2022, "Detecting corrupted labels without training a
model to predict"): kNN label voting on image features, rank-based. Classification only.

1. *Votes*: each sample's k nearest reference images (memoised search, self excluded by index; k =
   ``--knn_k``) vote for their observed class with weight max(cosine similarity, 0) (SimiFeat weights a vote
   by 1 - cosine distance); the (C,) vote vector is L2-normalised, as SimiFeat's rank method does: v.
2. *Consensus loss*: ce = -log(v[observed] + 1e-8) (SimiFeat's 'ce' score).
3. *Rank-based*: SimiFeat flags, within each observed class c, the samples whose ce is in the top rho_c of
   the class, rho_c being the class's estimated noise rate clipped to [0.05, 0.95]. The continuous score
   that keeps exactly this decision at threshold 0 is
   ``score = percentile of ce among the reference samples observed as c - (1 - rho_c)``, in (-1, 1)
   (mid-rank percentile: ties share a value, and a score does not depend on the rest of its split).
SimiFeat estimates rho_c from HOC's noise-transition matrix (a stochastic fit of third-order label
consensus); here rho_c is the fraction of reference samples observed as c whose weighted-vote majority is
another class (SimiFeat's own vote-based detector): deterministic and training-free. A class absent from
the reference set uses the pooled rate and the pooled ce distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lemon.scorers.base import ScorerOptions, ScoringContext
from lemon.scorers.probs import ClassificationScorer, n_classes, neighbour_label_counts
from lemon.scorers.registry import SCORERS

EPS = 1e-8
RATE_RANGE = (0.05, 0.95)


def vote_vectors(ctx: ScoringContext, split: str, k: int, c: int) -> np.ndarray:
    """(n, C) L2-normalised similarity-weighted class votes of the k image neighbours (zeros if no vote)."""
    sim, idx = ctx.neighbours(split, "img", k)
    labels = ctx.reference.observed.astype(np.int64)[idx]
    counts = neighbour_label_counts(labels, np.maximum(sim.astype(np.float64), 0.0), c)
    norm = np.linalg.norm(counts, axis=1, keepdims=True)
    return np.divide(counts, norm, out=np.zeros_like(counts), where=norm > 0)


def consensus_loss(votes: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(n,) -log(v[observed] + 1e-8)."""
    return -np.log(votes[np.arange(len(votes)), observed] + EPS)


@SCORERS.register("simifeat")
class SimiFeatScorer(ClassificationScorer):
    """Per-class rank of the kNN consensus loss, shifted by the class's estimated noise rate."""

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        self._ref: dict[str, np.ndarray] | None = None

    def _reference(self, ctx: ScoringContext) -> dict[str, np.ndarray]:
        """Per-class noise rates and sorted reference consensus losses (computed once)."""
        if self._ref is None:
            c = n_classes(ctx.features)
            obs = ctx.reference.observed.astype(np.int64)
            votes = vote_vectors(ctx, "train", self.options.k, c)[ctx.features.reference_index]
            ce = consensus_loss(votes, obs)
            disagree = (votes.argmax(axis=1) != obs) | (votes.max(axis=1) == 0)
            counts = np.bincount(obs, minlength=c)
            rate = np.bincount(obs, weights=disagree, minlength=c) / np.maximum(counts, 1)
            rate = np.clip(np.where(counts > 0, rate, disagree.mean()), *RATE_RANGE)
            order = np.lexsort((ce, obs))
            self._ref = {
                "rate": rate,
                "counts": counts,
                "ce_by_class": ce[order],
                "starts": np.concatenate([[0], np.cumsum(counts)]),
                "ce_pooled": np.sort(ce),
            }
        return self._ref

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        return {"class_noise_rate": self._reference(ctx)["rate"].tolist()}

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        ref = self._reference(ctx)
        obs = ctx.split(split).observed.astype(np.int64)
        ce = consensus_loss(vote_vectors(ctx, split, self.options.k, n_classes(ctx.features)), obs)
        percentile = np.empty(len(obs))
        for cls in np.unique(obs):  # one vectorised search per class
            rows = obs == cls
            pool = (
                ref["ce_by_class"][ref["starts"][cls] : ref["starts"][cls + 1]]
                if ref["counts"][cls]
                else ref["ce_pooled"]
            )
            lo, hi = (
                np.searchsorted(pool, ce[rows], "left"),
                np.searchsorted(pool, ce[rows], "right"),
            )
            percentile[rows] = (lo + hi) / (2.0 * len(pool))
        score = percentile - (1.0 - ref["rate"][obs])
        return {"score": score, "knn_ce": ce, "class_percentile": percentile}
