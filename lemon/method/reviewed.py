"""Pairs a person reviewed, used as labels (``run_lemon --reviewed decisions.csv``).

A review has two parts: the flagged pairs someone went through (most suspicious first: mostly errors, all
from the top of the scores) and an *audit*: pairs drawn uniformly at random across every scored pair. As a
labelled set the first part is biased; alone it would pick a threshold that flags only what was reviewed.
So every estimate is taken over the whole run, each reviewed pair standing for the pairs it represents:

- a reviewed flag (audit = 0) stands for itself (weight 1): the reviewer looked at it;
- an audited pair stands for an equal share of every pair nobody reviewed:
  weight = (N - reviewed flags) / audited pairs, N = every scored pair.

Weighted this way (a census of the reviewed flags plus a uniform sample of the rest), the F1 of any threshold
is estimated for the whole run, so LEMoN_OPT's hyper-parameters and the flag threshold are chosen on it
(:func:`lemon.method.evaluate.best_f1` with ``weights``). The audit alone gives the noise rate: the share of
audited pairs judged wrong, with its exact 95% binomial (Clopper-Pearson) interval. 'unsure' decisions are
left out of both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lemon.method.evaluate import best_f1

#: the interval's confidence level
CONFIDENCE = 0.95


def clopper_pearson(wrong: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial interval of a rate seen as ``wrong`` of ``n``; (0, 1) for n = 0."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if wrong <= 0 else float(beta.ppf(alpha / 2, wrong, n - wrong + 1))
    high = 1.0 if wrong >= n else float(beta.ppf(1 - alpha / 2, wrong + 1, n - wrong))
    return low, high


def design_weights(audit: np.ndarray, population: int) -> np.ndarray:
    """(m,) weight of each labelled reviewed pair: 1 for a reviewed flag, (population - reviewed flags) /
    audited pairs for an audited one (each stands for a share of the pairs nobody reviewed)."""
    audit = np.asarray(audit, dtype=bool)
    n_audit, n_flags = int(audit.sum()), int((~audit).sum())
    share = max(population - n_flags, n_audit) / n_audit if n_audit else 1.0
    return np.where(audit, share, 1.0)


@dataclass
class ReviewedLabels:
    """The labelled reviewed pairs of a run: per split, their rows (sorted), truth and audit flag.

    rows : split -> (m_s,) sorted row positions within the split
    is_mislabel : split -> (m_s,) bool, True where the decision is 'wrong'
    audit : split -> (m_s,) bool, True for pairs of the uniform audit sample
    population : every scored pair of the run (what the audit was drawn from)
    n_unsure, n_unsure_audit : 'unsure' decisions left out (of them, audited)
    """

    rows: dict[str, np.ndarray]
    is_mislabel: dict[str, np.ndarray]
    audit: dict[str, np.ndarray]
    population: int
    n_unsure: int = 0
    n_unsure_audit: int = 0
    splits: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.splits = [s for s in self.rows if len(self.rows[s])]

    def gather(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """``values[split][rows]`` of every split, concatenated in :attr:`splits` order."""
        parts = [np.asarray(values[s])[self.rows[s]] for s in self.splits]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _joined(self, per_pair: Mapping[str, np.ndarray]) -> np.ndarray:
        parts = [np.asarray(per_pair[s], dtype=bool) for s in self.splits]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)

    @property
    def y(self) -> np.ndarray:
        """(m,) True where the decision is 'wrong', in :meth:`gather` order."""
        return self._joined(self.is_mislabel)

    @property
    def is_audit(self) -> np.ndarray:
        """(m,) True for audited pairs, in :meth:`gather` order."""
        return self._joined(self.audit)

    @property
    def weights(self) -> np.ndarray:
        return design_weights(self.is_audit, self.population)

    @property
    def usable(self) -> bool:
        """Both 'wrong' and 'right' decisions: F1 can be estimated."""
        y = self.y
        return bool(y.any() and not y.all())

    def f1_threshold(self, scores: Mapping[str, np.ndarray]) -> tuple[float, float]:
        """(estimated F1, threshold) of the threshold that maximises the run-wide weighted F1 of ``scores``
        (split -> (n_s,) scores)."""
        f1, thr = best_f1(self.gather(scores), self.y, self.weights)
        return float(f1), float(thr)

    def noise_rate(self) -> dict[str, float] | None:
        """The audit's noise rate and its 95% Clopper-Pearson interval (None without audited pairs):
        ``estimated_noise_rate``, ``_low``, ``_high`` and the counts behind them."""
        audit, y = self.is_audit, self.y
        n, wrong = int(audit.sum()), int((y & audit).sum())
        if not n:
            return None
        low, high = clopper_pearson(wrong, n)
        return {
            "estimated_noise_rate": wrong / n,
            "estimated_noise_rate_low": low,
            "estimated_noise_rate_high": high,
            "audit/n": n,
            "audit/wrong": wrong,
            "audit/unsure": self.n_unsure_audit,
        }

    def info(self) -> dict[str, int]:
        """Counts for hparams.json."""
        y, audit = self.y, self.is_audit
        return {
            "reviewed_wrong": int(y.sum()),
            "reviewed_right": int((~y).sum()),
            "reviewed_unsure": self.n_unsure,
            "audited": int(audit.sum()),
            "population": self.population,
        }
