"""Hyper-parameter selection (lemon/method/select.py via the LEMoN scorer's fit)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scorer_from_config

from lemon.data.embeddings import features_from_arrays
from lemon.method.select import SearchSpace, search
from lemon.scorers.base import ScoringContext
from lemon.scorers.lemon import GRID, TIED

NAMES = ("beta", "gamma", "tau_1_n", "tau_2_n", "tau_1_m", "tau_2_m")


def _fit(ref, **overrides):
    ctx = ScoringContext(features_from_arrays(ref.inputs))
    return scorer_from_config(ref.run_config(**overrides)).fit(ctx)


def test_lemon_opt_reaches_at_least_the_originals_val_f1(reference):
    chosen = _fit(reference)
    assert chosen["selection"] == "lemon_opt"
    assert chosen["selected_val"] >= reference.results["selected_hparams"]["selected_val"] - 1e-12
    assert all(chosen[n] >= 0 for n in NAMES)


def test_selection_is_deterministic_per_seed(reference):
    first, second = _fit(reference, seed=3), _fit(reference, seed=3)
    assert first.pop("selection_s") >= 0 and second.pop("selection_s") >= 0  # wall time differs
    assert first == second


def test_fixed_hyperparameters_skip_selection(reference):
    chosen = _fit(reference, **reference.hparams)
    assert chosen["selection"] == "fixed"
    assert {n: chosen[n] for n in NAMES} == reference.hparams
    assert "selected_val" not in chosen  # val is not scored while fitting: the run reports it


def test_given_hyperparameters_report_the_val_f1_of_the_runs_val_scores(reference, tmp_path):
    from lemon.run.pipeline import run

    result = run(reference.run_config(**reference.hparams, output_dir=str(tmp_path / "out")))
    assert result.hparams["selection"] == "fixed"
    # the exact best-F1 threshold can only match or beat the original's fminbound on the same scores
    original = reference.results["selected_hparams"]["selected_val"]
    assert result.hparams["selected_val"] >= original - 1e-12
    assert result.hparams["selected_val"] == pytest.approx(result.metrics["val/F1_optimal"])


def test_partially_fixed_hyperparameters_are_kept(reference):
    chosen = _fit(
        reference, beta=7.5, tau_2_m=-1.0
    )  # any real value from the command line is accepted
    assert (
        chosen["beta"] == 7.5 and chosen["tau_2_m"] == -1.0 and chosen["selection"] == "lemon_opt"
    )


def test_lemon_fix_preset(reference):
    chosen = _fit(reference, knn_k=None, lemon_fix=True, dist_type="cosine")
    assert {n: chosen[n] for n in NAMES} == dict(
        beta=5, gamma=5, tau_1_n=0.1, tau_2_n=5, tau_1_m=0.1, tau_2_m=5
    )


def test_val_without_errors_falls_back_to_lemon_fix_with_warning(reference):
    arrays = dict(reference.inputs)
    arrays["val_is_mislabel"] = np.zeros_like(arrays["val_is_mislabel"])
    ctx = ScoringContext(features_from_arrays(arrays))
    with pytest.warns(UserWarning, match="falling back to LEMoN_FIX"):
        chosen = scorer_from_config(reference.run_config()).fit(ctx)
    assert chosen["selection"] == "lemon_fix_fallback" and chosen["selected_val"] is None


def test_grid_is_the_originals():
    space = SearchSpace(NAMES, GRID, TIED)
    points = space.grid_points()
    assert len(points) == 21 * 21 * 4 * 4
    assert np.all(points[:, 2] == points[:, 4]) and np.all(points[:, 3] == points[:, 5])


def test_search_finds_a_known_optimum_off_the_grid():
    target = np.array([2.5, 0.3, 7.2])

    def objective(H):
        return -np.abs(H - target).sum(axis=1)

    space = SearchSpace(
        ("a", "b", "c"), {"a": [0, 5], "b": [0, 5], "c": [0, 5]}, scale={"a": 5, "b": 1, "c": 5}
    )
    best, value = search(objective, space, seed=0)
    assert value > -0.05
    np.testing.assert_allclose([best["a"], best["b"], best["c"]], target, atol=0.05)


def test_search_stays_within_its_bounds():
    """An objective that always rewards a larger value is stopped at MAX_FACTOR x scale (never an
    unbounded tau whose exp overflows float32), and at 0 from below."""
    from lemon.method.select import MAX_FACTOR

    space = SearchSpace(("a", "b"), {"a": [0, 1], "b": [0, 1]}, scale={"a": 5.0, "b": 1.0})
    best, value = search(lambda H: H[:, 0] - H[:, 1], space, seed=0)
    assert best["a"] == pytest.approx(MAX_FACTOR * 5.0) and best["b"] == 0.0
    assert value == pytest.approx(MAX_FACTOR * 5.0)


def _synthetic_10000():
    """The issue's larger held-out case: --dataset synthetic --n_synthetic 10000 --knn_k 30 (cosine)."""
    from lemon.data import DATASETS
    from lemon.run.config import RunConfig

    cfg = RunConfig(output_dir="unused", dataset="synthetic", n_synthetic=10000, knn_k=30)
    return cfg, DATASETS.get("synthetic")(cfg.data_options()).load_features()


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["small-cos", "small-euc", "small-disc", "N2000", "synthetic-10000"]
)
def test_default_search_reaches_the_val_f1_of_ten_times_the_budget(case, request):
    """Self-consistency: what a search with ten times the exploration finds, the default finds too."""
    from conftest import REFERENCE_DIR, Reference

    if case == "synthetic-10000":
        cfg, features = _synthetic_10000()
    elif case == "N2000":
        ref = request.getfixturevalue("n2000")
        cfg, features = ref.run_config(), features_from_arrays(ref.inputs)
    else:
        ref = Reference(REFERENCE_DIR / case)
        cfg, features = ref.run_config(), features_from_arrays(ref.inputs)
    ctx = ScoringContext(features)
    default = scorer_from_config(cfg).fit(ctx)
    larger = scorer_from_config(cfg.replace(search_budget=10.0)).fit(ctx)
    assert default["selection"] == larger["selection"] == "lemon_opt"
    assert default["selected_val"] >= larger["selected_val"], (default, larger)
    assert larger["selection_evaluations"] > 2 * default["selection_evaluations"]
