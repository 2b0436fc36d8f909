"""LEMoN scores (lemon/scorers/lemon.py) against the ORIGINAL implementation's outputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import scorer_from_config

from lemon.data.embeddings import features_from_arrays
from lemon.method.hparams import ABLATION_RULES
from lemon.scorers.base import ScorerOptions, ScoringContext
from lemon.scorers.lemon import LemonOptions, LemonScorer

COMPONENTS = (("d_mm", "d_1"), ("s_n", "d_n"), ("s_m", "d_m"), ("score", "pred_score"))


def _scorer(ref, **overrides):
    cfg = ref.run_config(**overrides)
    return ScoringContext(features_from_arrays(ref.inputs)), scorer_from_config(cfg)


def test_scores_match_original_at_its_hyperparameters(reference):
    ctx, scorer = _scorer(reference)
    for split in ("train", "val", "test"):
        ours = scorer.score(ctx, split, reference.hparams)
        rows = reference.rows(split)
        for mine, theirs in COMPONENTS:
            np.testing.assert_allclose(
                ours[mine],
                reference.outputs[theirs][rows],
                rtol=0,
                atol=1e-5,
                err_msg=f"{reference.name} {split} {mine}",
            )
        terms = scorer.terms(ctx, split)
        for ours_idx, orig_idx in (("idx_n", "I_n"), ("idx_m", "I_m")):
            mine = np.sort(getattr(terms, ours_idx), axis=1)
            theirs = np.sort(reference.outputs[orig_idx][rows], axis=1)
            np.testing.assert_array_equal(
                mine, theirs, err_msg=f"{reference.name} {split} {ours_idx}"
            )


def test_n2000_matches_except_float32_ties(n2000):
    """N2000: identical neighbour sets except where the k-th and (k+1)-th similarities tie to ~1e-7
    (faiss and torch round float32 dot products differently); every other row matches to 1e-5."""
    ctx, scorer = _scorer(n2000)
    for split in ("train", "val", "test"):
        ours = scorer.score(ctx, split, n2000.hparams)
        rows = n2000.rows(split)
        terms = scorer.terms(ctx, split)
        same = np.ones(rows.sum(), dtype=bool)
        for space, ours_idx, orig_idx in (("img", "idx_n", "I_n"), ("txt", "idx_m", "I_m")):
            mine, theirs = (
                np.sort(getattr(terms, ours_idx), 1),
                np.sort(n2000.outputs[orig_idx][rows], 1),
            )
            differ = ~(mine == theirs).all(axis=1)
            sim, _ = ctx.neighbours(split, space, scorer.options.k + 1)
            assert np.all(sim[differ, -2] - sim[differ, -1] < 1e-6), "a non-tie neighbour differs"
            same &= ~differ
        assert same.mean() > 0.99
        np.testing.assert_allclose(
            ours["score"][same], n2000.outputs["pred_score"][rows][same], atol=1e-5
        )


def test_consistent_discrete_weighting_differs_from_legacy(reference):
    if not reference.config["use_discrete_for_text"]:
        pytest.skip("only the discrete reference has the legacy quirk")
    ctx, scorer = _scorer(reference, legacy_discrete_weighting=False)
    ours = scorer.score(ctx, "val", reference.hparams)["score"]
    assert np.abs(ours - reference.outputs["pred_score"][reference.rows("val")]).max() > 1e-3


def test_hand_computed_single_query():
    """One query, two reference pairs, k=1, cosine: the LEMoN formula by hand."""
    x = np.array([[1.0, 0.0]])
    y = np.array([[0.6, 0.8]])
    ref_img = np.array([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    ref_txt = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    arrays = {
        "train_img": ref_img,
        "train_txt": ref_txt,
        "train_noisy_label": np.array([0, 1, 0]),
        "val_img": x,
        "val_txt": y,
        "val_noisy_label": np.array([1]),
        "test_img": x,
        "test_txt": y,
        "test_noisy_label": np.array([1]),
    }
    ctx, scorer = ScoringContext(features_from_arrays(arrays)), LemonScorer(ScorerOptions(k=1))
    h = dict(beta=2.0, gamma=3.0, tau_1_n=0.5, tau_2_n=1.5, tau_1_m=0.25, tau_2_m=2.0)
    out = scorer.score(ctx, "val", h)
    d_mm = 1 - 0.6
    # image neighbour of x: ref 0 (sim 0.8); its own d_mm = 1 - 0.8 = 0.2; text distance d(y, ref_txt0) = 0.4
    s_n = np.exp(0.5 * 0.8) * np.exp(-1.5 * 0.2) * 0.4
    # text neighbour of y: ref 1 (sim 0.8); its own d_mm = 0; image distance d(x, ref_img1) = 1
    s_m = np.exp(0.25 * 0.8) * np.exp(-2.0 * 0.0) * 1.0
    np.testing.assert_allclose(out["d_mm"], [d_mm])
    np.testing.assert_allclose(out["s_n"], [s_n])
    np.testing.assert_allclose(out["s_m"], [s_m])
    np.testing.assert_allclose(out["score"], [d_mm + 2 * s_n + 3 * s_m])


_TAUS_0 = {"tau_1_n": 0.0, "tau_2_n": 0.0, "tau_1_m": 0.0, "tau_2_m": 0.0}
#: ablation -> (what it forces, whether d_mm stays in the score), written from SPEC.md section 5 (the
#: original's --ablation): tau_* forced to 0; beta/gamma weight to 0; d1: d_mm dropped, beta = 1;
#: only_beta / only_gamma: (1, 0) / (0, 1) with every tau 0; multimodal_baseline: beta = gamma = 0
ABLATIONS = {
    "none": ({}, True),
    "tau_1": ({"tau_1_n": 0.0, "tau_1_m": 0.0}, True),
    "tau_2": ({"tau_2_n": 0.0, "tau_2_m": 0.0}, True),
    "tau_1_2": (_TAUS_0, True),
    "beta": ({"beta": 0.0}, True),
    "gamma": ({"gamma": 0.0}, True),
    "d1": ({"beta": 1.0}, False),
    "only_beta": ({"beta": 1.0, "gamma": 0.0, **_TAUS_0}, True),
    "only_gamma": ({"beta": 0.0, "gamma": 1.0, **_TAUS_0}, True),
    "multimodal_baseline": ({"beta": 0.0, "gamma": 0.0, **_TAUS_0}, True),
}


def test_every_ablation_is_covered():
    assert set(ABLATIONS) == set(ABLATION_RULES)


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablations_score_as_lemon_with_their_terms_forced(ablation, small_npz):
    """An ablated scorer, given any hyper-parameters, scores exactly as plain LEMoN at those
    hyper-parameters with the ablation's values forced (and without d_mm for d1); the plain score is
    checked against the original's outputs and by hand above."""
    with np.load(small_npz) as z:
        ctx = ScoringContext(features_from_arrays({k: z[k] for k in z.files}))
    given = dict(beta=7.0, gamma=3.0, tau_1_n=0.5, tau_2_n=2.0, tau_1_m=0.25, tau_2_m=1.5)
    forced, keeps_d_mm = ABLATIONS[ablation]
    scorer = LemonScorer(LemonOptions(k=5, ablation=ablation, fixed=given, select=False))
    chosen = scorer.fit(ctx)
    assert {n: chosen[n] for n in given} == {**given, **forced}
    out = scorer.score(ctx, "test", chosen)
    plain = LemonScorer(LemonOptions(k=5)).score(ctx, "test", {**given, **forced})
    expected = plain["score"] - (0 if keeps_d_mm else plain["d_mm"])
    np.testing.assert_allclose(out["score"], expected, rtol=1e-12, atol=1e-12)
    if ablation == "multimodal_baseline":
        np.testing.assert_allclose(out["score"], out["d_mm"])  # the CLIP-similarity baseline


def test_normalize_d1_is_softmax_over_class_prompts(small_npz):
    with np.load(small_npz) as z:
        arrays = {k: z[k] for k in z.files}
    ctx = ScoringContext(features_from_arrays(arrays))
    d = LemonScorer(LemonOptions(k=5, normalize_d1=True)).score(
        ctx, "val", dict(beta=0, gamma=0, tau_1_n=0, tau_2_n=0, tau_1_m=0, tau_2_m=0)
    )["d_mm"]
    img = arrays["val_img"] / np.linalg.norm(arrays["val_img"], axis=1, keepdims=True)
    prompts = arrays["label_prompt_txt"] / np.linalg.norm(
        arrays["label_prompt_txt"], axis=1, keepdims=True
    )
    dist = 1 - img @ prompts.T
    soft = np.exp(dist) / np.exp(dist).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(d, soft[np.arange(len(img)), arrays["val_noisy_label"]], atol=1e-6)
