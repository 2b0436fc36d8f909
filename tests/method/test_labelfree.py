"""The label-free rule (lemon/method/labelfree.py) on hand-made score mixtures with known fractions, mismatched
pairs scored by every scorer, and its wiring through lemon.run.pipeline.run (metrics, scores.csv, summary,
report)."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from lemon.core.errors import LemonError
from lemon.data.features import Features, SplitFeatures
from lemon.data.synthetic import make_synthetic_embeddings
from lemon.method.evaluate import select_thresholds
from lemon.method.labelfree import (
    MAX_SPLIT_GAP,
    MIN_AGREEMENT,
    MIN_SEPARATION,
    WIDE_INTERVAL,
    estimate_noise_rate,
    mismatched_pairs,
    pool_estimates,
)
from lemon.run.config import RunConfig
from lemon.run.pipeline import run
from lemon.run.stages import flag_rule
from lemon.run.summary import format_summary
from lemon.scorers import SCORERS
from lemon.scorers.base import ScorerOptions, ScoringContext
from lemon.scorers.lemon import LemonOptions


def two_modes(n: int, rate: float, seed: int = 0, shift: float = 4.0):
    """Clean ~ N(0, 1), mislabelled ~ N(shift, 1) (the first round(rate * n)), mismatched ~ N(shift, 1)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) < round(rate * n)
    scores = np.where(y, rng.normal(shift, 1, n), rng.normal(0, 1, n))
    return scores, y, rng.normal(shift, 1, 2 * n)


def best_f1(scores: np.ndarray, y: np.ndarray) -> float:
    """The best F1 any threshold reaches (uses the labels)."""
    tp = np.cumsum(y[np.argsort(-scores)])
    return float(np.max(2 * tp / (np.arange(1, len(y) + 1) + y.sum())))


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.6])
def test_known_fraction_is_recovered_and_flagged(rate):
    scores, y, null = two_modes(20_000, rate)
    est = estimate_noise_rate(scores, mismatched_scores=null)
    assert est.method == "mismatched_tail" and abs(est.rate - rate) < 0.02
    flagged = scores >= est.threshold
    assert flagged.sum() == round(est.rate * len(scores))  # the top round(rate * n)
    f1 = 2 * np.sum(flagged & y) / (flagged.sum() + y.sum())
    assert f1 > best_f1(scores, y) - 0.02
    assert est.separation_auroc > 0.95 and not est.warnings


def test_single_mode_gives_a_rate_near_zero():
    rng = np.random.default_rng(1)
    clean = rng.gamma(2.0, 1.0, 10_000)  # skewed, one mode, all clean
    null = 8 + rng.normal(0, 1, 20_000)  # the clean tail reaches the mismatched scores a little
    est = estimate_noise_rate(clean, mismatched_scores=null)
    assert est.rate < 0.01 and np.sum(clean >= est.threshold) <= 100
    # a score mixture on the same skewed scores invents errors; the mixture fallback's BIC guard
    # keeps a Gaussian single mode at 0
    est = estimate_noise_rate(rng.normal(0, 1, 3000))
    assert est.method == "mixture" and est.rate == 0.0 and est.warnings


def test_class_correction_undoes_mismatches_that_hit_the_true_class():
    """With C classes, a mismatch takes the image's true class about rate / (C - 1) of the time when
    the given label is wrong: those mismatches score like clean pairs."""
    rng = np.random.default_rng(2)
    n, rate, c = 40_000, 0.6, 4
    scores, _, _ = two_modes(n, rate, seed=3)
    hits = rng.random(2 * n) < rate / (c - 1)
    null = np.where(hits, rng.normal(0, 1, 2 * n), rng.normal(4, 1, 2 * n))
    corrected = estimate_noise_rate(scores, mismatched_scores=null, n_classes=c)
    plain = estimate_noise_rate(scores, mismatched_scores=null)
    assert abs(corrected.rate - rate) < 0.02 and plain.rate > rate + 0.1


def test_weak_separation_says_the_rate_may_be_off_either_way():
    """Clean pairs reach deep into the mismatched tail: the estimate is too high here, but errors that
    hide among clean pairs could make it too low elsewhere; the warning says both, never 'upper bound',
    and the interval starts at 0 and covers the truth."""
    scores, _, null = two_modes(5000, 0.3, shift=1.0)
    est = estimate_noise_rate(scores, mismatched_scores=null)
    assert est.separation_auroc < MIN_SEPARATION and est.rate > 0.3
    assert any("too high or too low" in w for w in est.warnings)
    assert not any("upper bound" in w for w in est.warnings)
    assert est.low == 0.0 and est.high >= 0.3


def confusable(n: int, rate: float, hidden: float, seed: int = 0):
    """Scores of pairs of which a fraction ``rate`` is mislabelled, ``hidden`` of those confusable (they
    score like clean pairs, N(0, 1); the rest like mismatched pairs, N(4, 1)), mismatched scores, and
    class probabilities (C = 5; 0.75 on the true class) with the observed labels."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < rate
    looks_clean = ~wrong | (rng.random(n) < hidden)
    scores = np.where(looks_clean, rng.normal(0, 1, n), rng.normal(4, 1, n))
    c = 5
    true = rng.integers(0, c, n)
    given = np.where(wrong, (true + rng.integers(1, c, n)) % c, true)
    probs = np.full((n, c), 0.25 / (c - 1))
    probs[np.arange(n), true] = 0.75
    return scores, rng.normal(4, 1, 2 * n), given, probs, wrong.mean()


def test_confusable_errors_are_counted_by_the_class_probabilities():
    """Half of the errors score like clean pairs: the mismatched tail counts only the other half, the
    confident joint counts them all; it is picked (its classifier agrees with most labels) and the
    interval spans both."""
    scores, null, given, probs, truth = confusable(20_000, 0.3, hidden=0.5)
    est = estimate_noise_rate(scores, mismatched_scores=null, class_probs=probs, labels=given)
    assert est.estimates["mismatched_tail"] < truth - 0.1  # half the errors look clean
    assert est.method == "cleanlab_joint" and est.agreement > MIN_AGREEMENT
    assert abs(est.rate - truth) < 0.03
    assert est.low <= est.estimates["tail_min"] and est.low <= truth <= est.high
    assert any("uncertain" in w and "docs/review.md" in w for w in est.warnings)


def test_a_weak_classifier_leaves_the_rate_to_the_mismatched_pairs():
    """Probabilities whose argmax agrees with few labels cannot tell a wrong label from a weak
    classifier: the tail estimate is used, and the warning says why."""
    scores, null, given, _, truth = confusable(20_000, 0.3, hidden=0.0)
    weak = np.random.default_rng(5).dirichlet(np.ones(5), len(given))
    est = estimate_noise_rate(scores, mismatched_scores=null, class_probs=weak, labels=given)
    assert est.agreement <= MIN_AGREEMENT and est.method == "mismatched_tail"
    assert abs(est.rate - truth) < 0.03 and est.low <= truth <= est.high
    assert any("agree with only" in w for w in est.warnings)


def test_random_errors_get_a_narrow_interval_and_a_guess_gets_all_of_it():
    scores, y, null = two_modes(20_000, 0.3)
    est = estimate_noise_rate(scores, mismatched_scores=null)
    assert est.low <= y.mean() <= est.high and est.high - est.low < WIDE_INTERVAL
    assert est.standard_error < 0.01 and not est.warnings
    guess = estimate_noise_rate(scores)  # no mismatched pairs, no class probabilities
    assert guess.method == "mixture" and (guess.low, guess.high) == (0.0, 1.0)
    assert any("review" in w for w in guess.warnings)


def test_cleanlab_fallback_without_mismatched_scores():
    rng = np.random.default_rng(4)
    n, c = 5000, 5
    true = rng.integers(0, c, n)
    probs = np.full((n, c), 0.05)
    probs[np.arange(n), true] = 0.8
    flip = rng.random(n) < 0.2
    given = np.where(flip, (true + rng.integers(1, c, n)) % c, true)
    est = estimate_noise_rate(flip + rng.normal(0, 0.3, n), class_probs=probs, labels=given)
    assert est.method == "cleanlab_joint" and abs(est.rate - flip.mean()) < 0.03


def test_bad_scores_are_one_line_errors():
    with pytest.raises(LemonError, match=r"scores has 1 NaN/inf values \(first at 1\)"):
        estimate_noise_rate(np.array([1.0, np.nan]))
    with pytest.raises(LemonError, match="scores is empty"):
        estimate_noise_rate(np.array([]))


def test_mismatched_pairs_differ_in_text_and_are_seeded():
    texts = np.array(["a", "a", "b", "c", "b", "a"], dtype=object)
    i, j = mismatched_pairs(texts, np.random.default_rng(0), repeats=3)
    assert len(i) == 18 and np.all(texts[i] != texts[j]) and np.all(i != j)
    assert np.array_equal(np.bincount(i, minlength=6), np.full(6, 3))
    again = mismatched_pairs(texts, np.random.default_rng(0), repeats=3)
    assert np.array_equal(i, again[0]) and np.array_equal(j, again[1])
    i, j = mismatched_pairs(np.arange(1000), np.random.default_rng(1), max_pairs=300)
    assert len(i) == 300 and np.all(i != j)
    i, j = mismatched_pairs(np.array(["same"] * 5, dtype=object), np.random.default_rng(0))
    assert len(i) == 0  # no pair can be mismatched


def test_mismatched_pairs_stay_within_their_group():
    """Out-of-fold features: a row's image is paired only with texts its own fold model embedded."""
    texts = np.array([f"t{k}" for k in range(30)], dtype=object)
    groups = np.array([2] * 12 + [0] * 17 + [5])  # the last row is alone in its group
    i, j = mismatched_pairs(texts, np.random.default_rng(3), repeats=4, groups=groups)
    assert np.all(groups[i] == groups[j]) and np.all(i != j)
    assert 29 not in i and 29 not in j
    assert np.array_equal(np.bincount(i, minlength=30)[:29], np.full(29, 4))
    assert len(set(j[groups[i] == 0])) > 10  # partners spread over the group, not one neighbour


def test_pooling_prefers_held_out_pairs_when_the_reference_disagrees():
    train, _, train_null = two_modes(4000, 0.4, seed=5)
    val, _, val_null = two_modes(1000, 0.4, seed=6)
    test, _, test_null = two_modes(1000, 0.4, seed=7)
    nulls = {"train": train_null, "val": val_null, "test": test_null}
    rule = pool_estimates({"train": train, "val": val, "test": test}, nulls)
    assert rule.pool == "all" and abs(rule.rate - 0.4) < 0.03 and rule.low <= 0.4 <= rule.high
    assert not any("held-out" in w for w in rule.warnings)
    assert set(rule.split_rates) == {"train", "val", "test"}
    # a memorised reference: its errors score like clean pairs, so it looks almost clean
    memorised, _, _ = two_modes(4000, 0.05, seed=8)
    rule = pool_estimates({"train": memorised, "val": val, "test": test}, nulls)
    assert rule.split_rates["train"] < 0.4 - MAX_SPLIT_GAP
    assert rule.pool == "held_out" and abs(rule.rate - 0.4) < 0.03
    assert any("held-out estimate is used" in w for w in rule.warnings)
    held = np.concatenate([val, test])
    assert np.sum(held >= rule.threshold) == round(rule.rate * len(held))
    # on 100-pair splits a gap of the same size is sampling noise: twice its bootstrap standard
    # error is wider, and the pooled estimate is kept
    small = {
        s: two_modes(n, rate, seed=k)
        for s, n, rate, k in (
            ("train", 150, 0.3, 10),
            ("val", 100, 0.4, 20),
            ("test", 100, 0.4, 30),
        )
    }
    rule = pool_estimates({s: v[0] for s, v in small.items()}, {s: v[2] for s, v in small.items()})
    assert MAX_SPLIT_GAP < rule.split_gap < 2 * rule.split_gap_se
    assert rule.pool == "all" and not any("held-out" in w for w in rule.warnings)
    assert rule.low <= 0.4 <= rule.high  # 350 pairs: a wide interval, and it says so
    assert any("uncertain" in w for w in rule.warnings)


# ------------------------------------------------------------------------------ mismatched pairs scored
def synthetic_features(n: int = 400, noise: float = 0.4) -> Features:
    a = make_synthetic_embeddings(n, noise)
    splits = {
        s: SplitFeatures(
            s,
            a[f"{s}_img"],
            a[f"{s}_txt"],
            np.array([f"A photo of a {c}" for c in a[f"{s}_noisy_label"]], dtype=object),
            a[f"{s}_noisy_label"],
            a[f"{s}_label"],
            a[f"{s}_is_mislabel"],
        )
        for s in ("train", "val", "test")
    }
    return Features("classification", splits, a["label_prompt_txt"])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"dist_type": "euclidean"},
        {"use_discrete_for_text": True},
        {"normalize_d1": True},
        {"ablation": "d1"},
    ],
    ids=["cosine", "euclidean", "discrete", "normalize_d1", "d1"],
)
def test_lemon_reuses_neighbour_lists_exactly(options):
    """On a held-out split (no own reference rows) reusing pair i's image neighbours and pair j's text
    neighbours equals scoring the mismatched pairs with a fresh neighbour search (the generic way)."""
    from lemon.scorers.base import Scorer

    features = synthetic_features()
    ctx = ScoringContext(features)
    scorer = SCORERS.get("lemon")(LemonOptions(k=10, select=False, **options))
    hparams = scorer.fit(ctx)
    i, j = mismatched_pairs(features.splits["test"].texts, np.random.default_rng(0))
    reused = scorer.score_mismatched(ctx, "test", i, j, hparams)
    fresh = Scorer.score_mismatched(scorer, ctx, "test", i, j, hparams)
    np.testing.assert_allclose(reused, fresh, rtol=0, atol=1e-10)
    assert set(features.splits) == {"train", "val", "test"}  # the temporary split is gone
    if not options:  # with LEMoN_FIX, mismatched pairs (all errors) score above the real ones
        real = scorer.score(ctx, "test", hparams)["score"]
        assert np.median(reused) > np.median(real)


def test_generic_mismatched_scores_are_the_scorer_on_swapped_pairs():
    features = synthetic_features()
    ctx = ScoringContext(features)
    q = features.splits["val"]
    i, j = mismatched_pairs(q.texts, np.random.default_rng(1))
    out = SCORERS.get("clip_sim")(ScorerOptions()).score_mismatched(ctx, "val", i, j, {})
    np.testing.assert_allclose(out, 1 - np.sum(q.img[i] * q.txt[j], axis=1), atol=1e-6)


# ------------------------------------------------------------------------------ through the pipeline
def test_evaluate_and_flag_rule_know_label_free():
    t = select_thresholds(np.array([0.1, 0.5, 0.9]), np.array([0, 0, 1], bool), 0.7)
    assert t["label_free"] == 0.7 and flag_rule(t) == "optimal"
    t = select_thresholds(np.array([0.1, 0.5, 0.9]), None, 0.7)
    assert flag_rule(t) == "label_free"


def test_labelled_run_flags_at_the_val_optimal_threshold(tmp_path):
    cfg = RunConfig(
        output_dir=str(tmp_path / "run"), dataset="synthetic", n_synthetic=800, knn_k=10
    )
    result = run(cfg)
    m, h = result.metrics, result.hparams
    scores = pd.read_csv(tmp_path / "run" / "scores.csv")
    truth = scores.is_mislabel.mean()
    assert abs(m["estimated_noise_rate"] - truth) < 0.1
    for split in ("train", "val", "test"):
        assert f"{split}/estimated_noise_rate" in m
        assert m[f"{split}/flagged_label_free"] == m[f"{split}/n_flagged_label_free"]
        part = scores[scores.split == split]
        assert (
            m[f"{split}/flagged_label_free"] == (part.score >= h["thresholds"]["label_free"]).sum()
        )
        assert 0 <= m[f"{split}/F1_label_free"] <= 1 and f"{split}/TP_label_free" in m
    assert h["flag_rule"] == "optimal"
    assert h["label_free"]["method"] in ("cleanlab_joint", "mismatched_tail")
    low, high = m["estimated_noise_rate_low"], m["estimated_noise_rate_high"]
    assert low <= m["estimated_noise_rate"] <= high and low <= truth <= high
    assert scores.flagged.dtype == bool
    np.testing.assert_array_equal(scores.flagged, scores.score >= h["thresholds"]["optimal"])
    summary = format_summary(result)
    assert "F1_label_free" in summary and "estimated noise rate (no labels used)" in summary
    assert "flagged (the threshold that maximised F1 on the labelled val split)" in summary


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """A run on noisy embeddings without any truth (30 % of the labels flipped), with its report."""
    root = tmp_path_factory.mktemp("unlabelled")
    arrays = make_synthetic_embeddings(800, 0.3)
    truth = {s: arrays[f"{s}_is_mislabel"] for s in ("train", "val", "test")}
    keep = {k: v for k, v in arrays.items() if not k.endswith(("_is_mislabel", "_label"))}
    keep.update({f"{s}_noisy_label": arrays[f"{s}_noisy_label"] for s in truth})
    np.savez(root / "data.npz", **keep)
    cfg = RunConfig(
        output_dir=str(root / "run"),
        dataset="embeddings",
        embeddings=str(root / "data.npz"),
        lemon_fix=True,
        report=True,
    )
    return run(cfg), truth


def test_unlabelled_run_flags_with_the_label_free_rule(unlabelled):
    result, truth = unlabelled
    m, h, out = result.metrics, result.hparams, result.out_dir
    assert "test/AUROC" not in m and h["flag_rule"] == "label_free"
    all_truth = np.concatenate(list(truth.values()))
    assert abs(m["estimated_noise_rate"] - all_truth.mean()) < 0.05
    scores = pd.read_csv(out / "scores.csv")
    np.testing.assert_array_equal(scores.flagged, scores.score >= h["thresholds"]["label_free"])
    n_flagged = sum(m[f"{s}/flagged_label_free"] for s in truth)
    assert scores.flagged.sum() == n_flagged
    assert abs(n_flagged - round(m["estimated_noise_rate"] * len(scores))) <= 1
    # the flags find the planted errors without having seen one
    flagged = scores.flagged.to_numpy()
    wrong = np.concatenate([truth[s] for s in ("train", "val", "test")]).astype(bool)
    assert 2 * np.sum(flagged & wrong) / (flagged.sum() + wrong.sum()) > 0.8
    summary = format_summary(result)
    rule_line = next(line for line in summary.splitlines() if line.startswith("flagged"))
    assert "label-free rule" in rule_line
    counts = re.findall(r"(\w+) (\d+) of (\d+)", rule_line)
    assert {s: int(k) for s, k, _ in counts} == {s: m[f"{s}/flagged_label_free"] for s in truth}


def test_report_and_flagged_csv_use_the_same_rule(unlabelled):
    result, _ = unlabelled
    out = result.out_dir
    scores = pd.read_csv(out / "scores.csv")
    flagged = pd.read_csv(out / "flagged.csv")
    expected = scores[scores.flagged].sort_values("score", ascending=False, kind="stable")
    assert flagged["score"].tolist() == expected["score"].tolist()
    page = (out / "report.html").read_text()
    assert (
        f"<b>{len(flagged)}</b> of {len(scores)} pairs are flagged by the label-free rule" in page
    )
    m = json.loads((out / "metrics.json").read_text())
    low, high = m["estimated_noise_rate_low"], m["estimated_noise_rate_high"]
    assert f"<b>{100 * m['estimated_noise_rate']:.1f}%</b>" in page
    assert f"(interval {100 * low:.1f}%&ndash;{100 * high:.1f}%)" in page
    if high - low > WIDE_INTERVAL:  # the review route is named once
        assert page.count("docs/review.md") == 1


def test_without_any_mismatch_the_rule_falls_back_to_cleanlab():
    """A split whose pairs all carry one label has no mismatched pair: the rule uses cleanlab's joint
    on zero-shot class probabilities instead (classification), and says which method it used."""
    from lemon.method.labelfree import label_free_rule

    features = synthetic_features()
    q = features.splits["test"]
    one = SplitFeatures(
        "test",
        q.img,
        q.txt,
        np.full(len(q), "A photo of a cat", dtype=object),
        np.full(len(q), 3),
        q.clean,
        q.clean != 3,
    )
    features.splits = {"train": features.splits["train"], "test": one}
    ctx = ScoringContext(features)
    scorer = SCORERS.get("clip_sim")(ScorerOptions())
    scores = {"test": scorer.score(ctx, "test", {})["score"]}
    rule = label_free_rule(scorer, ctx, scores, {})
    assert rule.method == "cleanlab_joint" and rule.n_mismatched == 0
    from cleanlab.count import estimate_joint

    from lemon.method.zeroshot import fit_temperature, zero_shot_probs

    labels = np.full(len(q), 3)
    temperature = fit_temperature(one.img, features.label_prompt_txt, labels, max_rows=len(q))
    assert rule.zero_shot_temperature == temperature
    probs = zero_shot_probs(one.img, features.label_prompt_txt, temperature)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joint = estimate_joint(labels, probs)
    assert rule.rate == pytest.approx(1 - np.trace(joint))


def test_a_large_split_mismatches_a_sample_of_its_rows(tmp_path, monkeypatch):
    """Above MAX_ROWS rows a split's mismatched pairs come from a sample (its neighbours searched for
    that sample only): the estimate stays close to the one from every row."""
    import lemon.method.labelfree as labelfree

    cfg = RunConfig(
        output_dir=str(tmp_path / "all"), dataset="synthetic", n_synthetic=2000, lemon_fix=True
    )
    whole = run(cfg).metrics["estimated_noise_rate"]
    monkeypatch.setattr(labelfree, "MAX_ROWS", 300)
    sampled = run(cfg.replace(output_dir=str(tmp_path / "sampled")))
    assert sampled.hparams["label_free"]["n_mismatched"] <= 3 * 2 * 300
    assert abs(sampled.metrics["estimated_noise_rate"] - whole) < 0.05
    assert abs(whole - 0.4) < 0.05
