"""CLIPCleaner-style baseline (after Feng et al. 2024, "CLIPCleaner: Cleaning noisy labels with
CLIP"): a per-class two-component Gaussian mixture on the zero-shot probability of the observed class.

p = probability of the observed class: CLIP zero-shot over the class prompts (``--temperature``), or the
user's ``S_pred_probs`` when given. For each class c, a 2-component 1-D mixture (sklearn
``GaussianMixture``, ``random_state = --seed``) is fitted on p of the reference samples observed as c; the
high-mean component is the clean one. score = posterior probability of the low-mean component, in [0, 1]
(CLIPCleaner keeps a sample as clean when the clean component's posterior, 1 - score, is high).
Details: values are standardised within the class before fitting (GMMs are affine-equivariant, and this
keeps sklearn's variance floor negligible next to the tiny spread of T = 1 probabilities); the mixtures are
fitted once on the reference set (observed labels only, no ground truth), so every split is scored by the
same per-sample rule; a class with fewer than ``MIN_CLASS_SAMPLES`` reference samples, or no spread, uses
the mixture fitted on all reference samples (logged). The fitted weights, means and variances go to
hparams.json. Classification only.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from lemon.scorers.base import ScorerOptions, ScoringContext
from lemon.scorers.probs import ClassificationScorer, class_probs, n_classes
from lemon.scorers.registry import SCORERS

log = logging.getLogger(__name__)
MIN_CLASS_SAMPLES = 10


def fit_two_gaussians(x: np.ndarray, seed: int) -> np.ndarray:
    """(3, 2) rows weight, mean, variance of a 2-component 1-D GMM on ``x``, low-mean component first."""
    from sklearn.mixture import GaussianMixture

    x = np.asarray(x, dtype=np.float64)
    mu, sd = x.mean(), x.std()
    if sd == 0:  # no spread: two identical components, posterior 1/2 everywhere
        return np.array([[0.5, 0.5], [mu, mu], [1.0, 1.0]])
    gmm = GaussianMixture(n_components=2, random_state=seed).fit(((x - mu) / sd)[:, None])
    params = np.stack(
        [gmm.weights_, mu + sd * gmm.means_.ravel(), sd**2 * gmm.covariances_.ravel()]
    )
    return params[:, np.argsort(params[1], kind="stable")]


def low_component_posterior(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(n,) posterior of component 0 for values ``x`` (n,) under per-sample mixtures ``params`` (n, 3, 2)."""
    from scipy.special import logsumexp

    w, m, v = params[:, 0], params[:, 1], params[:, 2]
    log_joint = np.log(w) - 0.5 * (np.log(2 * np.pi * v) + (x[:, None] - m) ** 2 / v)
    return np.exp(log_joint[:, 0] - logsumexp(log_joint, axis=1))


@SCORERS.register("clipcleaner")
class ClipCleanerScorer(ClassificationScorer):
    """Posterior of the low-probability component of the observed class's 2-Gaussian mixture."""

    prob_source = "zero_shot"

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        self._params: np.ndarray | None = None  # (C, 3, 2)

    def _fit_params(self, ctx: ScoringContext) -> np.ndarray:
        if self._params is None:
            ref = ctx.reference
            obs = ref.observed.astype(np.int64)
            p_obs = class_probs(ctx, ref, self.options.temperature)[np.arange(len(ref)), obs]
            pooled = fit_two_gaussians(p_obs, self.options.seed)
            params = np.repeat(pooled[None], n_classes(ctx.features), axis=0)
            small = []
            for c in range(len(params)):  # one mixture per class
                x = p_obs[obs == c]
                if len(x) >= MIN_CLASS_SAMPLES and np.ptp(x) > 0:
                    params[c] = fit_two_gaussians(x, self.options.seed)
                else:
                    small.append(c)
            if small:
                log.info(
                    "clipcleaner: %d classes with < %d reference samples or no spread use the pooled "
                    "mixture: %s",
                    len(small),
                    MIN_CLASS_SAMPLES,
                    small[:20],
                )
            self._params = params
        return self._params

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        params = self._fit_params(ctx)
        return {
            **self.probability_info(ctx),
            "gmm_weight": params[:, 0].tolist(),
            "gmm_mean": params[:, 1].tolist(),
            "gmm_var": params[:, 2].tolist(),
        }

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        q = ctx.split(split)
        obs = q.observed.astype(np.int64)
        p_obs = class_probs(ctx, q, self.options.temperature)[np.arange(len(q)), obs]
        posterior = low_component_posterior(p_obs, self._fit_params(ctx)[obs])
        return {"score": posterior, "p_observed": p_obs}
