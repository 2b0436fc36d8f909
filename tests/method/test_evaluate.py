"""Evaluator (lemon/method/evaluate.py): thresholds on val, metrics, agreement with the original."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from lemon.method.evaluate import (
    best_f1,
    evaluate_split,
    heuristic_threshold,
    prevalence_threshold,
    select_thresholds,
)


def test_best_f1_equals_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.integers(0, 8, 60).astype(float)  # many ties
        y = rng.random(60) < 0.4
        brute = max(f1_score(y, s >= t) for t in np.unique(s))
        f1, thr = best_f1(s, y)
        assert f1 == pytest.approx(brute)
        assert f1_score(y, s >= thr) == pytest.approx(f1)


def test_best_f1_batched_matches_rows():
    rng = np.random.default_rng(1)
    S, y = rng.random((5, 40)), rng.random(40) < 0.3
    f1s, _thrs = best_f1(S, y)
    for row, f1 in zip(S, f1s):
        assert best_f1(row, y)[0] == pytest.approx(f1)


def test_metrics_equal_the_originals_for_the_same_scores(reference):
    """AUROC/AUPRC identical; heuristic threshold to 1e-6; prevalence F1 identical; optimal F1 >= original's."""
    val = reference.rows("val")
    scores, y = reference.outputs["pred_score"], reference.outputs["is_mislabel"].astype(bool)
    thresholds = select_thresholds(scores[val], y[val])
    orig = reference.results["metrics"]
    assert thresholds["heuristic"] == pytest.approx(orig["val"]["F1_heuristic_thres"], abs=1e-6)
    for split in ("train", "val", "test"):
        rows = reference.rows(split)
        m = evaluate_split(scores[rows], y[rows], thresholds, split)
        assert m[f"{split}/AUROC"] == pytest.approx(orig[split]["AUROC"], abs=1e-12)
        assert m[f"{split}/AUPRC"] == pytest.approx(orig[split]["AUPRC"], abs=1e-12)
        assert m[f"{split}/F1_prevalence"] == pytest.approx(orig[split]["F1_prev"], abs=1e-12)
        assert m[f"{split}/F1_heuristic"] == pytest.approx(orig[split]["F1_heuristic"], abs=1e-12)
    m = evaluate_split(scores[val], y[val], thresholds, "val")
    assert m["val/F1_optimal"] >= orig["val"]["F1_optimal"] - 1e-12


def test_thresholds_chosen_on_val_are_applied_unchanged_to_test():
    val_scores, val_y = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)
    thresholds = select_thresholds(val_scores, val_y)
    assert thresholds["optimal"] == pytest.approx(0.5)
    m = evaluate_split(np.array([0.4, 0.6, 0.7]), np.array([0, 0, 1], bool), thresholds, "test")
    assert m["test/threshold_optimal"] == pytest.approx(0.5)
    assert (m["test/TP_optimal"], m["test/FP_optimal"], m["test/TN_optimal"]) == (1, 1, 1)
    assert m["test/F1_optimal"] == pytest.approx(2 / 3)


def test_prevalence_threshold_flags_the_val_rate():
    s = np.arange(10.0)
    assert (s >= prevalence_threshold(s, 0.3)).sum() == 3


def test_heuristic_rules():
    bimodal = np.concatenate(
        [np.random.default_rng(0).normal(0, 0.1, 200), np.random.default_rng(1).normal(1, 0.1, 200)]
    )
    assert 0.3 < heuristic_threshold(bimodal) < 0.7
    assert heuristic_threshold(np.ones(5)) == 1.0


def test_single_class_split_reports_null_auroc_with_warning():
    with pytest.warns(UserWarning, match="single class"):
        m = evaluate_split(np.array([0.1, 0.5]), np.array([0, 0], bool), {"heuristic": 0.3}, "test")
    assert m["test/AUROC"] is None and m["test/AUPRC"] is None
    assert m["test/FP_heuristic"] == 1
