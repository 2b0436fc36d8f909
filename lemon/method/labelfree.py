"""Flags without labels: estimate the fraction of mislabelled pairs, give it an interval, flag that many.

Two estimators, each valid under its own assumption, and a rule that picks between them without labels:

- **mismatched tail** (every run): each image is paired with the text of another pair of its split whose
  text differs (2 per pair, seeded), and these deliberately *mismatched* pairs are scored by the same scorer
  with the same hyper-parameters and reference set. A mismatched pair is an error by construction. The real
  scores are a mixture ``(1 - rate) * clean + rate * mislabelled``; where clean pairs no longer reach, the
  real survival function is ``rate`` times the mislabelled one, so if errors score like mismatched pairs

      r(q) = S_real(t_q) / S_mismatched(t_q),   rate = median of r(q) over q in {0.50, ..., 0.90},

  t_q the q-quantile of the mismatched scores. For C classes a mismatch takes the image's true class about
  rate / (C - 1) of the time; ``rate = r / (1 + r / (C - 1))`` undoes it. Real errors are rarely random:
  people confuse a cat with a dog, and a confusable error scores much closer to a clean pair than a random
  swap does. Those errors are missing from the mismatched tail, so this estimate counts the errors that look
  random and is *low* on real noise (2-7x on ../shared/data/real-noise/); r(q) then keeps rising towards
  lower quantiles instead of staying flat.
- **confident joint** (classification with class probabilities): cleanlab's calibrated confident joint on
  zero-shot class probabilities (a softmax over the class prompts of the image embeddings, with the
  temperature that best explains the observed labels, :func:`lemon.method.zeroshot.fit_temperature`; a
  user's ``pred_probs`` only when there are no class prompts). It counts a pair as mislabelled when its
  probabilities back another class above that class's typical confidence, confusable or not.

Picking: the confident joint when the classifier's argmax agrees with more than half of the observed labels
(:data:`MIN_AGREEMENT`: below it a weak classifier and mostly wrong labels cannot be told apart, and
cleanlab counts the classifier's own mistakes as label errors), else the mismatched tail. Measured on the
15 real-noise files and the benchmark's random-swap cases (benchmarks/bench_label_free.py, docs/label-free.md).

The interval (``low``, ``high``) spans what the estimators' assumptions leave open, each end widened by
two of its own bootstrap standard errors: from the lowest tail ratio (errors that look random: at least
these) to the confident joint re-computed with the temperature that explains the labels cleanlab keeps
(refitted on them until it repeats: sharper probabilities, more errors), or, without usable class
probabilities, to the tail ratio at the 5 % quantile of the mismatched scores (errors at least as
suspicious as the weakest random swaps). When real and
mismatched pairs separate weakly (label-free AUROC below :data:`MIN_SEPARATION`) clean pairs reach the
mismatched tail and errors hide among clean pairs: the estimate may be off either way and the interval
starts at 0. An interval wider than :data:`WIDE_INTERVAL` comes with a line pointing to the review route.
The top round(rate * n) scores are flagged.

Without mismatched pairs or class probabilities the rate falls back to a two-Gaussian mixture on the scores,
kept only when BIC prefers it to one Gaussian (its interval is [0, 1]: a guess).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lemon.core.errors import LemonError
from lemon.core.npy import take_rows
from lemon.method.evaluate import prevalence_threshold

if TYPE_CHECKING:
    from lemon.data.features import Features, SplitFeatures
    from lemon.scorers.base import Scorer, ScoringContext

log = logging.getLogger(__name__)

#: where the tail ratio is read (quantiles of the mismatched scores)
QUANTILES = np.round(np.arange(0.50, 0.9001, 0.05), 2)
#: the tail ratio read here is the interval's upper end without class probabilities
LOW_QUANTILE = 0.05
#: label-free AUROC (clean vs mismatched) below which clean pairs reach the mismatched tail
MIN_SEPARATION = 0.85
#: class probabilities whose argmax agrees with at most this share of the observed labels are not used
MIN_AGREEMENT = 0.5
#: an interval wider than this (twice the +-0.05 the benchmark targets) is called wide
WIDE_INTERVAL = 0.10
#: standard errors added on each side of the interval
Z = 2.0
#: fewer mismatched scores than this make the tail ratios noisy
MIN_MISMATCHED = 200
#: the reference split's estimate this far below the held-out one (and twice the gap's standard error,
#: from BOOTSTRAP_ROUNDS seeded resamples of at most BOOTSTRAP_MAX scores): the embedder knows its pairs
MAX_SPLIT_GAP = 0.05
BOOTSTRAP_ROUNDS = 50
#: bootstrap rounds of the confident joint (each a cleanlab fit)
CLEANLAB_ROUNDS = 20
BOOTSTRAP_MAX = 20_000
#: mismatched pairs per real pair, and at most this many per run (relative SE ~1 % at q = 0.9)
REPEATS = 2
MAX_MISMATCHED = 200_000
#: rows of a split whose images and texts are mismatched at most (a sample above it): a streamed split of
#: millions is not searched a second time, only this sample's neighbours are. 20,000 rows give up to
#: 40,000 mismatched pairs per split; a 1e6-pair run (three splits) searches 60,000 rows more, not 150,000
MAX_ROWS = 20_000
#: refits of the recalibrated temperature at most (it repeats after 2-4 on the real-noise files)
RECALIBRATION_ROUNDS = 5
#: class-probability cells (rows x classes) of the run's sample for the confident joint, at most
MAX_PROB_CELLS = 10_000_000
MAX_PROB_ROWS = 60_000
#: the mixture fallback fits on a seeded subsample of at most this many scores
MIXTURE_MAX_FIT = 200_000
#: mixed into every seed of this module, so its draws differ from other consumers' of the same seed
SEED_PURPOSE = 12
#: the review route, named by every wide-interval line
REVIEW_HINT = (
    "review a random audit sample of pairs in report.html and rerun with --reviewed decisions.csv "
    "(see docs/review.md) to measure the rate with a binomial interval"
)
#: how the note on a wide interval starts (a run's summary prints it, so the log keeps it at INFO)
UNCERTAIN_NOTE = "the noise rate is uncertain"


@dataclass(frozen=True)
class NoiseEstimate:
    """What :func:`estimate_noise_rate` found for one set of scores.

    rate : estimated fraction of mislabelled pairs, in [0, 1]
    threshold : flags ``score >= threshold``: round(rate * n) of the scores it was fitted on
    method : 'cleanlab_joint', 'mismatched_tail' or 'mixture'
    separation_auroc : label-free AUROC of clean vs mismatched pairs (with mismatched pairs), else None
    n_mismatched : mismatched scores used
    warnings : why the estimate may be off, one sentence each
    low, high : the interval (see the module); None when not asked for
    estimates : every estimate computed, by name ('mismatched_tail', 'tail_min', 'tail_max',
        'tail_low_quantile', 'cleanlab_joint', 'cleanlab_recalibrated', 'mixture')
    agreement : share of observed labels the class probabilities' argmax agrees with (None without)
    standard_error : bootstrap standard error of ``rate`` (None when not asked for, or for the mixture)
    """

    rate: float
    threshold: float
    method: str
    separation_auroc: float | None = None
    n_mismatched: int = 0
    warnings: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    estimates: Mapping[str, float] = field(default_factory=dict)
    agreement: float | None = None
    standard_error: float | None = None


@dataclass(frozen=True)
class ClassProbs:
    """Class probabilities of a set of pairs, for the confident joint.

    labels : (n,) observed class ids
    probs : (n, C) class probabilities
    recalibrated : (n, C) the same with the temperature refitted on the pairs cleanlab keeps, or None
    """

    labels: np.ndarray
    probs: np.ndarray
    recalibrated: np.ndarray | None = None


def _finite(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise LemonError(f"{name} is empty: the noise rate needs at least one score.")
    bad = ~np.isfinite(a)
    if bad.any():
        raise LemonError(
            f"{name} has {int(bad.sum())} NaN/inf values (first at {int(np.flatnonzero(bad)[0])}); "
            "drop those pairs first."
        )
    return a


def mismatched_pairs(
    texts: Sequence[Any] | np.ndarray,
    rng: np.random.Generator,
    repeats: int = REPEATS,
    max_pairs: int | None = None,
    max_redraws: int = 50,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(i, j): image of pair i with the text of pair j != i, ``texts[j] != texts[i]``, ``repeats`` per pair.

    At most ``max_pairs`` (a seeded subsample). Pairs that still share a text after ``max_redraws``
    vectorised redraws are dropped (all of them when every text is the same: then there is no mismatch).
    ``groups`` (n,): j is drawn from i's own group only (out-of-fold features: rows embedded by different
    fold models live in different spaces, so only rows of one fold model can be paired).
    """
    import pandas as pd

    codes = pd.factorize(np.asarray(texts, dtype=object))[0]
    n = len(codes)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.tile(np.arange(n), repeats)
    if max_pairs is not None and len(i) > max_pairs:
        i = np.sort(rng.choice(len(i), max_pairs, replace=False)) % n
    if groups is None:

        def partner(rows: np.ndarray) -> np.ndarray:
            return (rows + rng.integers(1, n, len(rows))) % n  # never the row itself

    else:
        groups = np.asarray(groups)
        order = np.argsort(groups, kind="stable")
        first = np.searchsorted(groups[order], groups, side="left")  # where each row's group starts
        size = np.searchsorted(groups[order], groups, side="right") - first
        position = np.empty(n, np.int64)
        position[order] = np.arange(n)
        position -= first

        def partner(rows: np.ndarray) -> np.ndarray:
            alone = size[rows] < 2  # no other row in the group: paired with itself, dropped below
            step = rng.integers(1, np.maximum(size[rows], 2))
            step[alone] = 0
            return order[first[rows] + (position[rows] + step) % size[rows]]

    j = partner(i)
    for _ in range(max_redraws):
        same = codes[i] == codes[j]
        if not same.any():
            break
        j[same] = partner(i[same])
    keep = codes[i] != codes[j]
    return i[keep], j[keep]


def tail_ratios(
    scores: np.ndarray,
    mismatched: np.ndarray,
    quantiles: np.ndarray,
    n_classes: int | None = None,
) -> np.ndarray:
    """r(q) = S_real(t_q) / S_mismatched(t_q) at the q-quantiles t_q of the mismatched scores, corrected for
    mismatches that hit the true class (C classes). ``scores`` and ``mismatched`` must be sorted."""
    t = np.quantile(mismatched, quantiles)
    survival = 1.0 - np.searchsorted(scores, t, side="left") / len(scores)
    survival0 = 1.0 - np.searchsorted(mismatched, t, side="left") / len(mismatched)
    r = survival / np.maximum(survival0, 1.0 / len(mismatched))
    if n_classes is not None and n_classes > 1:
        r = r / (1.0 + r / (n_classes - 1))
    return np.clip(r, 0.0, 1.0)


def mismatched_tail_rate(
    scores: np.ndarray, mismatched: np.ndarray, n_classes: int | None = None
) -> tuple[float, float | None]:
    """(rate, separation_auroc): the median tail ratio of real to mismatched scores, and the label-free
    AUROC of clean vs mismatched pairs, ``(P(mismatched > real) - rate / 2) / (1 - rate)``."""
    s, s0 = np.sort(scores), np.sort(mismatched)
    rate = float(np.median(tail_ratios(s, s0, QUANTILES, n_classes)))
    below = np.searchsorted(s, s0, side="left")
    ties = np.searchsorted(s, s0, side="right") - below
    p_above = float((below + 0.5 * ties).mean() / len(s))
    separation = (p_above - rate / 2) / (1 - rate) if rate < 1 else None
    return rate, separation


def cleanlab_rate(labels: np.ndarray, class_probs: np.ndarray) -> tuple[float, float]:
    """(rate, agreement): 1 - trace of cleanlab's calibrated confident joint, and how often the
    probabilities' argmax agrees with the labels (a weak classifier makes cleanlab over-estimate)."""
    from cleanlab.count import estimate_joint

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(class_probs, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes missing from small samples
        joint = estimate_joint(labels, probs)
    agreement = float(np.mean(probs.argmax(axis=1) == labels))
    return float(np.clip(1.0 - np.trace(joint), 0.0, 1.0)), agreement


def mixture_rate(scores: np.ndarray, seed: int) -> float:
    """Weight of the higher-mean component of two Gaussians on the score, or 0 when BIC prefers one
    Gaussian (fitted on a seeded subsample of at most :data:`MIXTURE_MAX_FIT` scores)."""
    from sklearn.mixture import GaussianMixture

    x = scores[:, None]
    if len(x) > MIXTURE_MAX_FIT:
        rng = np.random.default_rng([seed, SEED_PURPOSE])
        x = x[np.sort(rng.choice(len(x), MIXTURE_MAX_FIT, replace=False))]
    if len(x) < 4 or np.ptp(x) == 0:
        return 0.0
    one = GaussianMixture(1, random_state=seed).fit(x)
    two = GaussianMixture(2, random_state=seed, n_init=3, reg_covar=1e-6).fit(x)
    if two.bic(x) >= one.bic(x):
        return 0.0
    return float(two.weights_[int(np.argmax(two.means_.ravel()))])


def bootstrap_ses(
    scores: np.ndarray,
    mismatched: np.ndarray | None,
    n_classes: int | None,
    probs: ClassProbs | None,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Bootstrap standard error of every estimate, by name (as :attr:`NoiseEstimate.estimates`): real and
    mismatched scores resampled alike for the tail ratios, the rows of the class probabilities for the
    confident joints; on at most :data:`BOOTSTRAP_MAX` rows scaled back by sqrt(m / n), so it costs the
    same on a million pairs. Each end of the interval gets its own standard error."""
    out: dict[str, float] = {}
    if mismatched is not None:
        s, s0 = np.asarray(scores), np.asarray(mismatched)
        m, m0 = min(len(s), BOOTSTRAP_MAX), min(len(s0), 2 * BOOTSTRAP_MAX)
        where = np.append(QUANTILES, LOW_QUANTILE)
        rounds = np.array(
            [
                tail_ratios(
                    np.sort(s[rng.integers(0, len(s), m)]),
                    np.sort(s0[rng.integers(0, len(s0), m0)]),
                    where,
                    n_classes,
                )
                for _ in range(BOOTSTRAP_ROUNDS)
            ]
        )
        tail = rounds[:, : len(QUANTILES)]
        per_round = {
            "mismatched_tail": np.median(tail, axis=1),
            "tail_min": tail.min(axis=1),
            "tail_max": tail.max(axis=1),
            "tail_low_quantile": rounds[:, -1],
        }
        out.update({k: float(np.std(v) * np.sqrt(m / len(s))) for k, v in per_round.items()})
    if probs is not None:
        n = len(probs.labels)
        m = min(n, BOOTSTRAP_MAX)
        joint, recalibrated = [], []
        for _ in range(CLEANLAB_ROUNDS):
            rows = rng.integers(0, n, m)
            joint.append(cleanlab_rate(probs.labels[rows], probs.probs[rows])[0])
            if probs.recalibrated is not None:
                recalibrated.append(cleanlab_rate(probs.labels[rows], probs.recalibrated[rows])[0])
        out["cleanlab_joint"] = float(np.std(joint) * np.sqrt(m / n))
        if recalibrated:
            out["cleanlab_recalibrated"] = float(np.std(recalibrated) * np.sqrt(m / n))
    return out


def estimate_noise_rate(
    scores: np.ndarray,
    *,
    mismatched_scores: np.ndarray | None = None,
    n_classes: int | None = None,
    class_probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    recalibrated_probs: np.ndarray | None = None,
    seed: int = 0,
    interval: bool = True,
) -> NoiseEstimate:
    """Estimate the fraction of mislabelled pairs among ``scores``, its interval, and the threshold
    flagging that many (the module says how).

    Parameters
    ----------
    scores : (n,) scores of the pairs, higher = more likely mislabelled
    mismatched_scores : (m,) scores of mismatched pairs (:func:`mismatched_pairs`) by the same scorer and
        setting
    n_classes : C for classification (mismatches then take another class); None for captions
    class_probs, labels : (k, C) class probabilities and (k,) observed class ids of (a sample of) the same
        pairs, for the confident joint
    recalibrated_probs : (k, C) the same probabilities with the temperature refitted on the pairs cleanlab
        keeps: the interval's upper end when the confident joint is used
    seed : seed of the bootstrap and of the mixture fallback
    interval : compute ``low``, ``high`` and ``standard_error`` (bootstrap rounds)
    """
    s = _finite(scores, "scores")
    notes: list[str] = []
    estimates: dict[str, float] = {}
    separation: float | None = None
    m = 0 if mismatched_scores is None else int(np.size(mismatched_scores))
    s0 = _finite(mismatched_scores, "mismatched_scores") if m else None
    if s0 is not None:
        rate_t, separation = mismatched_tail_rate(s, s0, n_classes)
        ratios = tail_ratios(np.sort(s), np.sort(s0), QUANTILES, n_classes)
        estimates.update(
            mismatched_tail=rate_t,
            tail_min=float(ratios.min()),
            tail_max=float(ratios.max()),
            tail_low_quantile=float(
                tail_ratios(np.sort(s), np.sort(s0), np.array([LOW_QUANTILE]), n_classes)[0]
            ),
        )
    probs = None
    agreement: float | None = None
    if class_probs is not None and labels is not None and len(labels):
        probs = ClassProbs(
            np.asarray(labels, np.int64),
            np.asarray(class_probs, np.float64),
            None if recalibrated_probs is None else np.asarray(recalibrated_probs, np.float64),
        )
        estimates["cleanlab_joint"], agreement = cleanlab_rate(probs.labels, probs.probs)
        if probs.recalibrated is not None:
            estimates["cleanlab_recalibrated"] = cleanlab_rate(probs.labels, probs.recalibrated)[0]
    if probs is not None and agreement is not None and (agreement > MIN_AGREEMENT or s0 is None):
        method = "cleanlab_joint"
        if agreement <= MIN_AGREEMENT:
            notes.append(
                f"the class probabilities agree with only {agreement:.0%} of the labels: cleanlab "
                "counts a weak classifier's mistakes as label errors, so the rate may be too high."
            )
    elif s0 is not None:
        method = "mismatched_tail"
        if probs is not None:
            notes.append(
                f"the class probabilities agree with only {agreement:.0%} of the labels (a weak "
                "classifier, or mostly wrong labels: they cannot be told apart), so the rate comes from "
                "the mismatched pairs."
            )
    else:
        method = "mixture"
        estimates["mixture"] = mixture_rate(s, seed)
        notes.append(
            "no mismatched pairs and no class probabilities: a two-Gaussian mixture on the scores, "
            "which over-estimates the rate when the clean scores are skewed or multi-modal."
        )
    rate = estimates[method]
    if m and m < MIN_MISMATCHED:
        notes.append(f"only {m} mismatched pairs: the tail estimate is noisy.")
    weak = s0 is not None and (separation is None or separation < MIN_SEPARATION)
    if weak:
        auroc = "undefined" if separation is None else f"{separation:.2f}"
        notes.append(
            f"the scores separate real from mismatched pairs weakly (label-free AUROC {auroc} < "
            f"{MIN_SEPARATION}): clean pairs reach the scores of errors and errors hide among clean "
            "pairs, so the estimate may be too high or too low; the interval starts at 0."
        )
    low = high = se = None
    if interval:
        rng = np.random.default_rng([seed, SEED_PURPOSE, 7])
        ses = {} if method == "mixture" else bootstrap_ses(s, s0, n_classes, probs, rng)
        se = ses.get(method)
        low, high = _interval(method, estimates, ses, weak)
        if high - low > WIDE_INTERVAL:
            notes.append(
                f"{UNCERTAIN_NOTE}: {rate:.1%} (interval {low:.1%}-{high:.1%}): "
                + _why_wide(method, estimates)
                + "; "
                + REVIEW_HINT
                + "."
            )
    threshold = prevalence_threshold(s, rate)
    return NoiseEstimate(
        rate,
        threshold,
        method,
        separation,
        m,
        tuple(notes),
        low,
        high,
        estimates,
        agreement,
        se,
    )


def _interval(
    method: str, estimates: Mapping[str, float], ses: Mapping[str, float], weak: bool
) -> tuple[float, float]:
    """(low, high): the span of the estimates the chosen method leaves open (the module says which),
    each widened by :data:`Z` of its own bootstrap standard errors; [0, 1] for the mixture."""
    if method == "mixture":
        return 0.0, 1.0
    names = ["mismatched_tail", "tail_min", "tail_max"]
    names += (
        ["cleanlab_joint", "cleanlab_recalibrated"]
        if method == "cleanlab_joint"
        else ["tail_low_quantile"]
    )
    names = [n for n in names if n in estimates]
    low = min(estimates[n] - Z * ses.get(n, 0.0) for n in names)
    high = max(estimates[n] + Z * ses.get(n, 0.0) for n in names)
    return (0.0 if weak else float(max(0.0, low))), float(min(1.0, high))


def _why_wide(method: str, estimates: Mapping[str, float]) -> str:
    """Half a sentence: what the interval's ends stand for."""
    if method == "mixture":
        return "a guess from the score distribution alone"
    tail = f"{estimates['mismatched_tail']:.1%}" if "mismatched_tail" in estimates else None
    if method == "cleanlab_joint":
        recalibrated = estimates.get("cleanlab_recalibrated")
        return (
            f"the class probabilities count {estimates['cleanlab_joint']:.1%}"
            + (f" ({recalibrated:.1%} recalibrated)" if recalibrated is not None else "")
            + (f", the mismatched pairs {tail} of errors that look random" if tail else "")
        )
    return (
        f"the mismatched pairs count the errors that look random ({tail}); confusable errors (a "
        "similar image's text) score lower and are counted only in part"
    )


@dataclass
class LabelFreeRule:
    """The label-free rule of a run: one rate, interval and threshold for every split, and how.

    rate, low, high, threshold, method, separation_auroc : of the pool the rule was fitted on
    pool : 'all' (every scored pair) or 'held_out' (every split but the reference, when the reference
        split's own estimate is clearly below theirs: the embedder knows those pairs; see
        :func:`pool_estimates`)
    split_rates : each split's own estimate
    split_gap, split_gap_se : held-out minus reference estimate, and its bootstrap standard error
        (None without a reference and held-out splits)
    n_mismatched : mismatched pairs scored in all
    warnings : why the rate may be off, one sentence each
    expected_warnings : those of ``warnings`` the run explains itself (its summary prints the
        wide-interval note; a model known to have trained on the reference pairs explains the switch to
        the held-out pool), so its log keeps them at INFO
    estimates, agreement, standard_error : the pool's estimates by name, the class probabilities'
        agreement with the labels, the rate's bootstrap standard error
    zero_shot_temperature : the softmax temperature of the run's zero-shot class probabilities (None
        without class prompts)
    """

    rate: float
    threshold: float
    method: str
    pool: str
    separation_auroc: float | None
    split_rates: dict[str, float]
    n_mismatched: int
    warnings: list[str] = field(default_factory=list)
    expected_warnings: list[str] = field(default_factory=list)
    split_gap: float | None = None
    split_gap_se: float | None = None
    low: float | None = None
    high: float | None = None
    estimates: dict[str, float] = field(default_factory=dict)
    agreement: float | None = None
    standard_error: float | None = None
    zero_shot_temperature: float | None = None

    def metrics(self) -> dict[str, float]:
        """``estimated_noise_rate`` with ``_low`` / ``_high``, and ``{split}/estimated_noise_rate``."""
        out = {"estimated_noise_rate": self.rate}
        if self.low is not None and self.high is not None:
            out.update(estimated_noise_rate_low=self.low, estimated_noise_rate_high=self.high)
        out.update({f"{s}/estimated_noise_rate": r for s, r in self.split_rates.items()})
        return out

    def info(self) -> dict[str, Any]:
        """Everything about the rule, for hparams.json."""
        return {
            "rate": self.rate,
            "low": self.low,
            "high": self.high,
            "threshold": self.threshold,
            "method": self.method,
            "pool": self.pool,
            "separation_auroc": self.separation_auroc,
            "agreement": self.agreement,
            "standard_error": self.standard_error,
            "estimates": dict(self.estimates),
            "split_rates": dict(self.split_rates),
            "split_gap": self.split_gap,
            "split_gap_se": self.split_gap_se,
            "n_mismatched": self.n_mismatched,
            "zero_shot_temperature": self.zero_shot_temperature,
            "warnings": list(self.warnings),
            "expected_warnings": list(self.expected_warnings),
        }


def _as_probs(p: ClassProbs | tuple[np.ndarray, ...]) -> ClassProbs:
    return p if isinstance(p, ClassProbs) else ClassProbs(*p)


def pool_estimates(
    scores: Mapping[str, np.ndarray],
    mismatched: Mapping[str, np.ndarray | None],
    *,
    n_classes: int | None = None,
    probs: Mapping[str, ClassProbs | tuple[np.ndarray, ...]] | None = None,
    seed: int = 0,
    reference: str = "train",
) -> LabelFreeRule:
    """Fit the rule on every split's scores pooled, and on each split alone; when the ``reference``
    split's estimate is below the held-out splits' one (pooled) by more than :data:`MAX_SPLIT_GAP` and
    more than twice the gap's standard error, use the held-out estimate: a CLIP that memorised its
    training pairs scores their errors like clean pairs (and its zero-shot probabilities back their given
    labels). Smaller gaps, and a reference estimate above the held-out one, are sampling noise (on
    100-pair splits it reaches 0.25), which the pooled estimate averages out.

    ``mismatched``: each split's mismatched scores (None or empty: none); ``probs``: each split's class
    probabilities (:class:`ClassProbs`, or a (labels, probs[, recalibrated]) tuple) of a sample of its
    rows drawn at one rate for every split.
    """
    names = list(scores)
    found = {s: _as_probs(p) for s, p in (probs or {}).items()}

    def fit(parts: Sequence[str], interval: bool) -> NoiseEstimate:
        nulls = [np.asarray(mismatched[p]) for p in parts if mismatched.get(p) is not None]
        null = np.concatenate(nulls) if nulls else None
        kw: dict[str, Any] = {}
        if found and all(p in found for p in parts):
            kw["labels"] = np.concatenate([found[p].labels for p in parts])
            kw["class_probs"] = np.concatenate([found[p].probs for p in parts])
            if all(found[p].recalibrated is not None for p in parts):
                kw["recalibrated_probs"] = np.concatenate([found[p].recalibrated for p in parts])
        s = np.concatenate([np.asarray(scores[p], dtype=np.float64) for p in parts])
        return estimate_noise_rate(
            s, mismatched_scores=null, n_classes=n_classes, seed=seed, interval=interval, **kw
        )

    pooled = fit(names, interval=True)
    held = [s for s in names if s != reference]
    compare = reference in names and bool(held)
    per_split = (
        {s: fit([s], interval=compare and s == reference) for s in names}
        if len(names) > 1
        else {names[0]: pooled}
    )
    chosen, pool, notes = pooled, "all", []
    gap = gap_se = None
    if compare:
        held_out = fit(held, interval=True)
        ref = per_split[reference]
        gap = held_out.rate - ref.rate
        if (
            held_out.method == ref.method
            and ref.standard_error is not None
            and held_out.standard_error is not None
        ):
            gap_se = float(np.hypot(ref.standard_error, held_out.standard_error))
        if gap > max(MAX_SPLIT_GAP, 2 * (gap_se or 0.0)):
            notes.append(
                f"the {reference} split's estimated noise rate ({ref.rate:.1%}) is "
                f"{gap:.1%} below the held-out splits' ({held_out.rate:.1%}): the embedder may have "
                f"been trained on the {reference} pairs (it then scores their errors like clean "
                "pairs); the held-out estimate is used."
            )
            chosen, pool = held_out, "held_out"
    return LabelFreeRule(
        rate=chosen.rate,
        threshold=chosen.threshold,
        method=chosen.method,
        pool=pool,
        separation_auroc=chosen.separation_auroc,
        split_rates={s: e.rate for s, e in per_split.items()},
        n_mismatched=sum(e.n_mismatched for e in per_split.values()),
        warnings=[*chosen.warnings, *notes],
        split_gap=gap,
        split_gap_se=gap_se,
        low=chosen.low,
        high=chosen.high,
        estimates=dict(chosen.estimates),
        agreement=chosen.agreement,
        standard_error=chosen.standard_error,
    )


def n_classes_of(features: Features) -> int | None:
    """C for classification features (class names, else prompts, else distinct labels); None for captions."""
    if features.task != "classification":
        return None
    if features.class_names is not None:
        return len(features.class_names)
    if features.label_prompt_txt is not None:
        return len(features.label_prompt_txt)
    return len(
        np.unique(np.concatenate([np.asarray(s.observed) for s in features.splits.values()]))
    )


def _class_ids(q: SplitFeatures, n_classes: int) -> np.ndarray | None:
    """The split's observed labels as class ids in [0, C), or None when they are not."""
    observed = np.asarray(q.observed)
    if observed.dtype.kind not in "iu" or (len(observed) and observed.max() >= n_classes):
        return None
    if len(observed) and observed.min() < 0:
        return None
    return observed.astype(np.int64)


def class_probabilities(
    features: Features, splits: Sequence[str], seed: int = 0
) -> tuple[dict[str, ClassProbs], float | None]:
    """({split: ClassProbs of a seeded sample of its rows}, zero-shot temperature) of a classification
    run; ({}, None) for captions or without class probabilities.

    Zero-shot probabilities when the run has class prompts (temperature: :func:`fit_temperature` on the
    pooled sample's observed labels; recalibrated: refitted on the pairs cleanlab's ``find_label_issues``
    keeps), else the user's ``pred_probs`` (not recalibrated). Every split is sampled at one rate, at most
    :data:`MAX_PROB_ROWS` rows and :data:`MAX_PROB_CELLS` probabilities in all, so the pooled confident
    joint weighs the splits as the run does and costs the same on a million pairs.
    """
    from lemon.method.zeroshot import fit_temperature, zero_shot_probs

    if features.task != "classification":
        return {}, None
    prompts = features.label_prompt_txt
    n_classes = len(prompts) if prompts is not None else n_classes_of(features)
    splits = [s for s in splits if s in features.splits]
    if not splits or not n_classes:
        return {}, None
    # the user's class probabilities, where no class prompts give zero-shot ones
    given = {s: p for s in splits if (p := features.splits[s].pred_probs) is not None}
    if prompts is None and len(given) < len(splits):
        return {}, None
    total = sum(len(features.splits[s]) for s in splits)
    budget = min(MAX_PROB_ROWS, max(1, MAX_PROB_CELLS // n_classes))
    fraction = min(1.0, budget / max(total, 1))
    rows, labels = {}, {}
    for number, s in enumerate(splits):
        q = features.splits[s]
        ids = _class_ids(q, n_classes)
        if ids is None:
            return {}, None
        rng = np.random.default_rng([seed, SEED_PURPOSE, 100 + number])
        k = max(1, int(round(fraction * len(q)))) if len(q) else 0
        rows[s] = np.sort(rng.choice(len(q), k, replace=False)) if k < len(q) else np.arange(len(q))
        labels[s] = ids[rows[s]]
    if prompts is None:
        return {
            s: ClassProbs(labels[s], np.asarray(take_rows(given[s], rows[s]), np.float64))
            for s in splits
        }, None
    # gathered batch by batch: a sample spread over a memory-mapped split would map most of its file
    img = {s: np.asarray(take_rows(features.splits[s].img, rows[s]), np.float32) for s in splits}
    all_img = np.concatenate([img[s] for s in splits])
    all_labels = np.concatenate([labels[s] for s in splits])
    temperature = fit_temperature(all_img, prompts, all_labels, max_rows=len(all_labels), seed=seed)
    probs = {s: zero_shot_probs(img[s], prompts, temperature) for s in splits}
    recalibrated_t = _recalibrated_temperature(
        all_img, prompts, all_labels, np.concatenate([probs[s] for s in splits]), seed
    )
    return {
        s: ClassProbs(
            labels[s],
            probs[s],
            None if recalibrated_t is None else zero_shot_probs(img[s], prompts, recalibrated_t),
        )
        for s in splits
    }, temperature


def _recalibrated_temperature(
    img: np.ndarray, prompts: np.ndarray, labels: np.ndarray, probs: np.ndarray, seed: int
) -> float | None:
    """The temperature that explains the labels cleanlab keeps at that temperature: refitted on the pairs
    ``find_label_issues`` keeps (the first fit explains the wrong labels too, which flattens it), until
    it repeats (at most :data:`RECALIBRATION_ROUNDS` refits); None when cleanlab keeps too few pairs."""
    from cleanlab.filter import find_label_issues

    from lemon.method.zeroshot import fit_temperature, zero_shot_probs

    temperature = None
    for _ in range(RECALIBRATION_ROUNDS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                issues = find_label_issues(labels, probs, n_jobs=1)
        except (ValueError, IndexError):  # cleanlab needs every class in the sample
            return temperature
        keep = ~np.asarray(issues, dtype=bool)
        if keep.sum() < 2:
            return temperature
        refit = fit_temperature(
            img[keep], prompts, labels[keep], max_rows=int(keep.sum()), seed=seed
        )
        if refit == temperature:
            break
        temperature = refit
        probs = zero_shot_probs(img, prompts, temperature)
    return temperature


def label_free_rule(
    scorer: Scorer,
    ctx: ScoringContext,
    scores: Mapping[str, np.ndarray],
    hparams: dict[str, Any],
    *,
    seed: int = 0,
    max_mismatched: int = MAX_MISMATCHED,
) -> LabelFreeRule:
    """The label-free rule of a scored run: mismatched pairs drawn within each split of ``scores`` (texts
    differ; :data:`REPEATS` per pair, at most ``max_mismatched`` in all, seeded), scored by ``scorer``
    with ``hparams``; class probabilities of a sample of rows (:func:`class_probabilities`); then
    :func:`pool_estimates`."""
    total = sum(len(s) for s in scores.values())
    mismatched: dict[str, np.ndarray | None] = {}
    for number, split in enumerate(scores):
        q = ctx.split(split)
        cap = max(1, int(np.ceil(max_mismatched * len(q) / max(total, 1))))
        rng = np.random.default_rng([seed, SEED_PURPOSE, number])
        sub = ctx
        if len(q) > MAX_ROWS:  # a sample of rows: the scorer's neighbour terms of these rows only
            sub = ctx.rows(split, np.sort(rng.choice(len(q), MAX_ROWS, replace=False)))
            q = sub.split(split)
        i, j = mismatched_pairs(q.texts, rng, max_pairs=cap, groups=q.fold)
        mismatched[split] = scorer.score_mismatched(sub, split, i, j, hparams) if len(i) else None
    probs, temperature = class_probabilities(ctx.features, list(scores), seed)
    rule = pool_estimates(
        scores, mismatched, n_classes=n_classes_of(ctx.features), probs=probs, seed=seed
    )
    rule.zero_shot_temperature = temperature
    log.info(
        "label-free rule: estimated noise rate %.4f [%.4f, %.4f] (%s, pool %s, %d mismatched pairs, "
        "separation %s, agreement %s)",
        rule.rate,
        rule.low,
        rule.high,
        rule.method,
        rule.pool,
        rule.n_mismatched,
        "-" if rule.separation_auroc is None else f"{rule.separation_auroc:.3f}",
        "-" if rule.agreement is None else f"{rule.agreement:.3f}",
    )
    return rule


def rate_text(info: Mapping[str, Any]) -> str:
    """'21.2% (interval 9.0%-26.4%)' from a rule's :meth:`LabelFreeRule.info` (hparams.json)."""
    low, high = info.get("low"), info.get("high")
    text = f"{info['rate']:.1%}"
    return text if low is None or high is None else f"{text} (interval {low:.1%}-{high:.1%})"


def is_uncertain_note(note: str) -> bool:
    """Whether ``note`` (one of a rule's warnings) is the wide-interval note, which the summary and the
    report say in their own line (:func:`wide_interval_line`) rather than as a warning."""
    return note.startswith(UNCERTAIN_NOTE)


def wide_interval_line(info: Mapping[str, Any]) -> str | None:
    """The one line a summary or report shows when the rule's interval is wider than
    :data:`WIDE_INTERVAL`: it says so and points to the review route; None otherwise."""
    low, high = info.get("low"), info.get("high")
    if low is None or high is None or high - low <= WIDE_INTERVAL:
        return None
    return (
        f"the estimated noise rate is uncertain (interval {low:.1%}-{high:.1%}, wider than "
        f"{WIDE_INTERVAL:.0%}): {REVIEW_HINT}."
    )
