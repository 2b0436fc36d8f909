"""Flags without labels: estimate the fraction of mislabelled pairs from the scores, and flag that many.

The rule compares the real scores with the scores of deliberately *mismatched* pairs: each image with the
text of another pair of its split whose text differs (2 per pair, seeded), scored by the same scorer with
the same hyper-parameters and reference set. A mismatched pair is a label error by construction, so its
score shows what an error scores like, with no label at all. The real scores are a mixture
``(1 - rate) * clean + rate * mislabelled``; where clean pairs no longer reach, the real survival function
is ``rate`` times the mismatched one, so

    rate = median over q in {0.50, 0.55, ..., 0.90} of S_real(t_q) / S_mismatched(t_q),

t_q the q-quantile of the mismatched scores (the median resists a dip of a single tail point). For
classification with C classes a mismatch takes another class, which is by chance the image's true class
when its given label is wrong (about rate / (C - 1) of the time); that inflates the ratio r, and
``rate = r / (1 + r / (C - 1))`` undoes it. The top round(rate * n) scores are flagged.

Score mixtures alone (two Gaussians or betas on the score) invent 24-45 % errors on clean data, because
clean scores are skewed or multi-modal; the mismatched pairs make no assumption on their shape. What the
rule cannot see: errors that score like clean pairs (a caption swapped for a near-synonym) are not in the
mismatched tail, so the rate counts the *detectable* errors and under-estimates hard noise. When clean and
mismatched pairs separate weakly (label-free AUROC below :data:`MIN_SEPARATION`) clean pairs reach the tail
and the rate is an upper bound; a warning says so.

Without mismatched scores the rate falls back to cleanlab's calibrated confident joint (class
probabilities and labels), else to a two-Gaussian mixture kept only when BIC prefers it to one Gaussian.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lemon.core.errors import LemonError
from lemon.method.evaluate import prevalence_threshold

if TYPE_CHECKING:
    from lemon.data.features import Features
    from lemon.scorers.base import Scorer, ScoringContext

log = logging.getLogger(__name__)

#: where the tail ratio is read (quantiles of the mismatched scores)
QUANTILES = np.round(np.arange(0.50, 0.9001, 0.05), 2)
#: label-free AUROC (clean vs mismatched) below which the rate is an upper bound
MIN_SEPARATION = 0.85
#: fewer mismatched scores than this make the tail ratios noisy
MIN_MISMATCHED = 200
#: the reference split's estimate this far below the held-out one (and twice the gap's standard error,
#: from BOOTSTRAP_ROUNDS seeded resamples of at most BOOTSTRAP_MAX scores): the embedder knows its pairs
MAX_SPLIT_GAP = 0.05
BOOTSTRAP_ROUNDS = 50
BOOTSTRAP_MAX = 20_000
#: mismatched pairs per real pair, and at most this many per run (relative SE ~1 % at q = 0.9)
REPEATS = 2
MAX_MISMATCHED = 200_000
#: rows of a split whose images and texts are mismatched at most (a sample above it): a streamed split of
#: millions is not searched a second time, only this sample's neighbours are. 20,000 rows give up to
#: 40,000 mismatched pairs per split; a 1e6-pair run (three splits) searches 60,000 rows more, not 150,000
MAX_ROWS = 20_000
#: the mixture fallback fits on a seeded subsample of at most this many scores
MIXTURE_MAX_FIT = 200_000
#: softmax temperature of the zero-shot class probabilities of the cleanlab fallback
ZERO_SHOT_TEMPERATURE = 0.07
#: mixed into every seed of this module, so its draws differ from other consumers' of the same seed
SEED_PURPOSE = 12


@dataclass(frozen=True)
class NoiseEstimate:
    """What :func:`estimate_noise_rate` found for one set of scores.

    rate : estimated fraction of mislabelled pairs, in [0, 1]
    threshold : flags ``score >= threshold``: round(rate * n) of the scores it was fitted on
    method : 'mismatched_tail', 'cleanlab_joint' or 'mixture'
    separation_auroc : label-free AUROC of clean vs mismatched pairs (mismatched_tail only), else None
    n_mismatched : mismatched scores used (0 for the fallbacks)
    warnings : why the estimate may be off, one sentence each
    """

    rate: float
    threshold: float
    method: str
    separation_auroc: float | None = None
    n_mismatched: int = 0
    warnings: tuple[str, ...] = ()


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


def mismatched_tail_rate(
    scores: np.ndarray, mismatched: np.ndarray, n_classes: int | None = None
) -> tuple[float, float | None]:
    """(rate, separation_auroc): the median tail ratio of real to mismatched scores, and the label-free
    AUROC of clean vs mismatched pairs, ``(P(mismatched > real) - rate / 2) / (1 - rate)``."""
    s, s0 = np.sort(scores), np.sort(mismatched)
    t = np.quantile(s0, QUANTILES)
    survival = 1.0 - np.searchsorted(s, t, side="left") / len(s)
    survival0 = 1.0 - np.searchsorted(s0, t, side="left") / len(s0)
    r = float(np.median(survival / np.maximum(survival0, 1.0 / len(s0))))
    if n_classes is not None and n_classes > 1:
        r = r / (1.0 + r / (n_classes - 1))
    rate = float(np.clip(r, 0.0, 1.0))
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


def estimate_noise_rate(
    scores: np.ndarray,
    *,
    mismatched_scores: np.ndarray | None = None,
    n_classes: int | None = None,
    class_probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    seed: int = 0,
) -> NoiseEstimate:
    """Estimate the fraction of mislabelled pairs among ``scores`` and the threshold flagging that many.

    Parameters
    ----------
    scores : (n,) scores of the pairs, higher = more likely mislabelled
    mismatched_scores : (m,) scores of mismatched pairs (:func:`mismatched_pairs`) by the same scorer and
        setting; when given (and non-empty) the tail-ratio rule is used
    n_classes : C for classification (mismatches then take another class); None for captions
    class_probs, labels : (n, C) class probabilities and (n,) given class ids of the same pairs; the
        cleanlab fallback, used only without mismatched scores
    seed : seed of the mixture fallback (the other methods are exact)
    """
    s = _finite(scores, "scores")
    notes: list[str] = []
    separation: float | None = None
    m = 0 if mismatched_scores is None else int(np.size(mismatched_scores))
    if m:
        s0 = _finite(mismatched_scores, "mismatched_scores")
        rate, separation = mismatched_tail_rate(s, s0, n_classes)
        method = "mismatched_tail"
        if m < MIN_MISMATCHED:
            notes.append(f"only {m} mismatched pairs: the estimate is noisy.")
        if separation is None or separation < MIN_SEPARATION:
            auroc = "undefined" if separation is None else f"{separation:.2f}"
            notes.append(
                f"the scores separate real from mismatched pairs weakly (label-free AUROC {auroc} < "
                f"{MIN_SEPARATION}): clean pairs reach the mismatched pairs' scores, so "
                f"{rate:.1%} is an upper bound of the noise rate."
            )
    elif class_probs is not None and labels is not None:
        rate, agreement = cleanlab_rate(labels, class_probs)
        method = "cleanlab_joint"
        if agreement < 0.6:
            notes.append(
                f"the class probabilities agree with only {agreement:.0%} of the labels: cleanlab "
                "over-estimates the noise rate with a weak classifier."
            )
    else:
        rate = mixture_rate(s, seed)
        method = "mixture"
        notes.append(
            "no mismatched pairs could be scored: two-Gaussian fallback, which over-estimates the "
            "rate when the clean scores are skewed or multi-modal."
        )
    threshold = prevalence_threshold(s, rate)
    return NoiseEstimate(rate, threshold, method, separation, m, tuple(notes))


@dataclass
class LabelFreeRule:
    """The label-free rule of a run: one rate and threshold for every split, and how they were chosen.

    rate, threshold, method, separation_auroc : of the pool the rule was fitted on
    pool : 'all' (every scored pair) or 'held_out' (every split but the reference, when the reference
        split's own estimate is clearly below theirs: the embedder knows those pairs; see
        :func:`pool_estimates`)
    split_rates : each split's own estimate
    split_gap, split_gap_se : held-out minus reference estimate, and its bootstrap standard error
        (None without a reference and held-out splits, or without mismatched pairs)
    n_mismatched : mismatched pairs scored in all
    warnings : why the rate may be off, one sentence each
    """

    rate: float
    threshold: float
    method: str
    pool: str
    separation_auroc: float | None
    split_rates: dict[str, float]
    n_mismatched: int
    warnings: list[str] = field(default_factory=list)
    split_gap: float | None = None
    split_gap_se: float | None = None

    def metrics(self) -> dict[str, float]:
        """``estimated_noise_rate`` and ``{split}/estimated_noise_rate`` for metrics.json."""
        out = {"estimated_noise_rate": self.rate}
        out.update({f"{s}/estimated_noise_rate": r for s, r in self.split_rates.items()})
        return out

    def info(self) -> dict[str, Any]:
        """Everything about the rule, for hparams.json."""
        return {
            "rate": self.rate,
            "threshold": self.threshold,
            "method": self.method,
            "pool": self.pool,
            "separation_auroc": self.separation_auroc,
            "split_rates": dict(self.split_rates),
            "split_gap": self.split_gap,
            "split_gap_se": self.split_gap_se,
            "n_mismatched": self.n_mismatched,
            "warnings": list(self.warnings),
        }


def pool_estimates(
    scores: Mapping[str, np.ndarray],
    mismatched: Mapping[str, np.ndarray | None],
    *,
    n_classes: int | None = None,
    probs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    seed: int = 0,
    reference: str = "train",
) -> LabelFreeRule:
    """Fit the rule on every split's scores pooled, and on each split alone; when the ``reference``
    split's estimate is below the held-out splits' one (pooled) by more than :data:`MAX_SPLIT_GAP` and
    more than twice the gap's standard error, use the held-out estimate: a CLIP that memorised its
    training pairs scores their errors like clean pairs. Smaller gaps, and a reference estimate above
    the held-out one, are sampling noise (on 100-pair splits it reaches 0.25), which the pooled
    estimate averages out.

    ``mismatched``: each split's mismatched scores (None or empty: none); ``probs``: each split's
    (labels, class probabilities) for the cleanlab fallback.
    """
    names = list(scores)

    def fit(parts: Sequence[str]) -> NoiseEstimate:
        nulls = [np.asarray(mismatched[p]) for p in parts if mismatched.get(p) is not None]
        null = np.concatenate(nulls) if nulls else None
        lab = cp = None
        if probs is not None and all(p in probs for p in parts):
            lab = np.concatenate([probs[p][0] for p in parts])
            cp = np.concatenate([probs[p][1] for p in parts])
        s = np.concatenate([np.asarray(scores[p], dtype=np.float64) for p in parts])
        return estimate_noise_rate(
            s, mismatched_scores=null, n_classes=n_classes, class_probs=cp, labels=lab, seed=seed
        )

    pooled = fit(names)
    per_split = {s: fit([s]) for s in names} if len(names) > 1 else {names[0]: pooled}
    chosen, pool, notes = pooled, "all", []
    held = [s for s in names if s != reference]
    gap = gap_se = None
    if reference in names and held:
        held_out = fit(held)
        gap = held_out.rate - per_split[reference].rate
        if held_out.method == per_split[reference].method == "mismatched_tail":
            rng = np.random.default_rng([seed, SEED_PURPOSE, len(names)])
            gap_se = float(
                np.hypot(
                    _bootstrap_se([reference], scores, mismatched, n_classes, rng),
                    _bootstrap_se(held, scores, mismatched, n_classes, rng),
                )
            )
        if gap > max(MAX_SPLIT_GAP, 2 * (gap_se or 0.0)):
            notes.append(
                f"the {reference} split's estimated noise rate ({per_split[reference].rate:.1%}) is "
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
    )


def _bootstrap_se(
    parts: Sequence[str],
    scores: Mapping[str, np.ndarray],
    mismatched: Mapping[str, np.ndarray | None],
    n_classes: int | None,
    rng: np.random.Generator,
) -> float:
    """Standard error of the tail-ratio estimate of the pooled ``parts``, from seeded resamples (real
    and mismatched scores resampled alike); on at most :data:`BOOTSTRAP_MAX` scores, scaled back by
    sqrt(m / n), so it costs the same on a million pairs."""
    s = np.concatenate([np.asarray(scores[p], dtype=np.float64) for p in parts])
    s0 = np.concatenate([np.asarray(mismatched[p]) for p in parts if mismatched.get(p) is not None])
    m, m0 = min(len(s), BOOTSTRAP_MAX), min(len(s0), 2 * BOOTSTRAP_MAX)
    rates = [  # rounds of a vectorised fit
        mismatched_tail_rate(
            s[rng.integers(0, len(s), m)], s0[rng.integers(0, len(s0), m0)], n_classes
        )[0]
        for _ in range(BOOTSTRAP_ROUNDS)
    ]
    return float(np.std(rates) * np.sqrt(m / len(s)))


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


def _fallback_probs(ctx: ScoringContext, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, class probabilities) of a classification split: the user's, else zero-shot ones."""
    from lemon.method.zeroshot import zero_shot_probs

    features, q = ctx.features, ctx.split(split)
    if features.task != "classification":
        return None
    if q.pred_probs is not None:
        return np.asarray(q.observed, dtype=np.int64), np.asarray(q.pred_probs, dtype=np.float64)
    if features.label_prompt_txt is None:
        return None
    probs = zero_shot_probs(q.img, features.label_prompt_txt, ZERO_SHOT_TEMPERATURE)
    return np.asarray(q.observed, dtype=np.int64), probs


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
    with ``hparams``, then :func:`pool_estimates`."""
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
    probs = None
    if not any(v is not None and len(v) for v in mismatched.values()):
        found = {s: _fallback_probs(ctx, s) for s in scores}
        probs = {s: p for s, p in found.items() if p is not None}
    rule = pool_estimates(
        scores, mismatched, n_classes=n_classes_of(ctx.features), probs=probs, seed=seed
    )
    log.info(
        "label-free rule: estimated noise rate %.4f (%s, pool %s, %d mismatched pairs, "
        "separation %s)",
        rule.rate,
        rule.method,
        rule.pool,
        rule.n_mismatched,
        "-" if rule.separation_auroc is None else f"{rule.separation_auroc:.3f}",
    )
    return rule
