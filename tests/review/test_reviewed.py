"""``run_lemon --reviewed decisions.csv``: reviewed pairs select the hyper-parameters and the threshold, the
audit gives the noise rate with an exact binomial interval; and the statistics behind them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

import run_lemon
from lemon.method.evaluate import best_f1
from lemon.method.hparams import HPARAM_NAMES, LEMON_FIX_HPARAMS
from lemon.method.reviewed import clopper_pearson, design_weights

SYNTHETIC = ["--dataset", "synthetic", "--n_synthetic", "800", "--knn_k", "30"]


# ------------------------------------------------------------------------------------------ statistics
def test_clopper_pearson_matches_the_exact_interval():
    low, high = clopper_pearson(0, 10)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 10))  # (1 - high)^10 = 0.025
    low, high = clopper_pearson(10, 10)
    assert low == pytest.approx(0.025 ** (1 / 10)) and high == 1
    assert clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_an_audited_pair_stands_for_its_share_of_the_unreviewed_pairs():
    w = design_weights(np.array([True, True, False, False, False]), population=100)
    assert w.tolist() == [48.5, 48.5, 1.0, 1.0, 1.0]  # (100 - 3 reviewed flags) / 2 audited
    assert design_weights(np.array([False, False]), 100).tolist() == [1.0, 1.0]


def test_weighted_best_f1_counts_each_pair_as_often_as_its_weight():
    scores, y = np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 0, 0, 1])
    f1, thr = best_f1(scores, y)
    assert f1 == pytest.approx(2 / 3) and thr == 3.5  # flag the top pair only
    f1, thr = best_f1(scores, y, np.array([1.0, 1.0, 1.0, 10.0]))
    # flag all: tp 11, flagged 13, positives 11 -> 22 / 24
    assert f1 == pytest.approx(22 / 24) and thr == 1.0
    f1_ones = best_f1(scores, y, np.ones(4))
    assert f1_ones[0] == pytest.approx(2 / 3) and f1_ones[1] == 3.5


# ------------------------------------------------------------------------------------------ end to end
def simulate(scores: pd.DataFrame, flags: int, audit: int, seed: int = 0) -> pd.DataFrame:
    """A reviewer's decisions from the truth: the ``flags`` top-scored pairs and ``audit`` pairs drawn
    uniformly from all (an audited pair among the top ones is audited)."""
    top = np.argsort(-scores["score"].to_numpy(), kind="stable")[:flags]
    drawn = np.random.default_rng(seed).choice(len(scores), audit, replace=False)
    rows = np.concatenate([top[~np.isin(top, drawn)], drawn])
    picked = scores.iloc[rows]
    wrong = picked["is_mislabel"].to_numpy() == 1
    return pd.DataFrame(
        {
            "row": picked["row"],
            "image": "",
            "decision": np.where(wrong, "wrong", "right"),
            "corrected": "",
            "audit": np.isin(rows, drawn).astype(int),
            "reviewed_at": "2025-05-01T12:00:00Z",
            "split": picked["split"],
        }
    )


def run(out: Path, *flags: str) -> tuple[dict, dict, pd.DataFrame]:
    assert run_lemon.main([*flags, "--output_dir", str(out)]) == 0
    read = json.loads
    return (
        read((out / "hparams.json").read_text()),
        read((out / "metrics.json").read_text()),
        pd.read_csv(out / "scores.csv"),
    )


@pytest.fixture(scope="module")
def label_free(tmp_path_factory) -> tuple[Path, dict, pd.DataFrame]:
    """A LEMoN_FIX run (no label read to score) of synthetic data with 40% planted errors."""
    out = tmp_path_factory.mktemp("lf") / "run"
    _, metrics, scores = run(out, *SYNTHETIC, "--lemon_fix")
    return out, metrics, scores


def test_reviewed_pairs_select_and_flag_and_the_audit_gives_the_rate(tmp_path, label_free, capsys):
    _, blind, truth = label_free
    decisions = simulate(truth, 200, 100)
    decisions.to_csv(tmp_path / "decisions.csv", index=False)
    h, m, scores = run(tmp_path / "rev", *SYNTHETIC, "--reviewed", str(tmp_path / "decisions.csv"))
    # selection on the decisions, not on val's labels, and the flags at their threshold
    assert h["selection"] == "lemon_opt_reviewed" and h["selected_val"] is None
    assert h["flag_rule"] == "reviewed"
    assert (scores["flagged"] == (scores["score"] >= h["thresholds"]["reviewed"])).all()
    assert {n: h[n] for n in HPARAM_NAMES} != LEMON_FIX_HPARAMS
    # the noise rate is the audit's, with its exact interval (computed here from the file)
    audited = decisions[decisions["audit"] == 1]
    wrong, n = int((audited["decision"] == "wrong").sum()), len(audited)
    assert n == 100 and m["audit/n"] == 100 and m["audit/wrong"] == wrong
    assert m["estimated_noise_rate"] == pytest.approx(wrong / n)
    assert m["estimated_noise_rate_low"] == pytest.approx(beta.ppf(0.025, wrong, n - wrong + 1))
    assert m["estimated_noise_rate_high"] == pytest.approx(beta.ppf(0.975, wrong + 1, n - wrong))
    assert (
        m["estimated_noise_rate_low"]
        <= truth["is_mislabel"].mean()
        <= m["estimated_noise_rate_high"]
    )
    assert m["label_free/estimated_noise_rate"] == pytest.approx(
        blind["estimated_noise_rate"], abs=0.1
    )
    assert h["noise_rate_source"] == "audit" and h["audit_noise_rate"]["audited"] == 100
    assert h["reviewed"]["reviewed_wrong"] + h["reviewed"]["reviewed_right"] == len(decisions)
    summary = capsys.readouterr().out
    assert "noise rate from the audit (--reviewed)" in summary and "Clopper-Pearson" in summary
    # what the review bought: test F1 above LEMoN_FIX at its label-free threshold (0.905 vs 0.857)
    assert m["test/F1_reviewed"] > blind["test/F1_label_free"]


def test_decisions_label_data_without_ground_truth(tmp_path, small_npz):
    """--real_dataset has no labels, so no selection; reviewed decisions are labels, so they select."""
    with np.load(small_npz) as z:
        truth = {s: z[f"{s}_is_mislabel"] for s in ("train", "val", "test")}
    base = ["--dataset", "embeddings", "--embeddings", str(small_npz), "--real_dataset"]
    h, _, scores = run(tmp_path / "blind", *base)
    assert h["selection"] == "lemon_fix" and h["noise_rate_source"] == "label_free"
    scores["is_mislabel"] = np.concatenate([truth[s] for s in ("train", "val", "test")]).astype(int)
    simulate(scores, 60, 60).to_csv(tmp_path / "d.csv", index=False)
    h, m, _ = run(tmp_path / "rev", *base, "--reviewed", str(tmp_path / "d.csv"))
    assert h["selection"] == "lemon_opt_reviewed" and h["flag_rule"] == "reviewed"
    assert "test/F1_reviewed" not in m  # no ground truth to grade it with
    assert m["val/n_flagged_reviewed"] >= 0 and h["noise_rate_source"] == "audit"


@pytest.mark.slow
def test_without_audit_or_without_both_kinds_the_run_says_so(tmp_path, label_free, caplog):
    _, _, truth = label_free
    flags_only = simulate(truth, 450, 0)  # the top 450: some are right
    flags_only.to_csv(tmp_path / "flags.csv", index=False)
    with caplog.at_level(logging.WARNING):
        h, m, _ = run(tmp_path / "a", *SYNTHETIC, "--reviewed", str(tmp_path / "flags.csv"))
    assert "no decision comes from the audit sample (audit = 1)" in caplog.text
    assert h["noise_rate_source"] == "label_free" and "audit/n" not in m
    assert h["selection"] == "lemon_opt_reviewed"
    caplog.clear()
    all_wrong = flags_only.iloc[:100].assign(decision="wrong")
    all_wrong.to_csv(tmp_path / "wrong.csv", index=False)
    with caplog.at_level(logging.WARNING):
        h, _, _ = run(tmp_path / "b", *SYNTHETIC, "--reviewed", str(tmp_path / "wrong.csv"))
    assert "all 100 decisions used are 'wrong', so no threshold can be chosen" in caplog.text
    assert h["selection"] == "lemon_opt" and h["flag_rule"] == "optimal"  # as without --reviewed


def test_decisions_of_another_run_are_refused_in_one_line(tmp_path, label_free, capsys):
    _, _, truth = label_free
    d = simulate(truth, 5, 0)
    d.loc[d.index[2], "row"] = 123456
    d.to_csv(tmp_path / "d.csv", index=False)
    code = run_lemon.main(
        [*SYNTHETIC, "--reviewed", str(tmp_path / "d.csv"), "--output_dir", str(tmp_path / "x")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "line 4: row 123456 of split" in err and "is not a scored pair of this run's data" in err


@pytest.mark.slow
def test_decisions_about_a_split_the_run_does_not_score_are_left_out(tmp_path, label_free, caplog):
    _, _, truth = label_free
    simulate(truth, 100, 100).to_csv(tmp_path / "d.csv", index=False)
    with caplog.at_level(logging.WARNING):
        h, _, _ = run(
            tmp_path / "r", *SYNTHETIC, "--skip_train", "--reviewed", str(tmp_path / "d.csv")
        )
    assert "which this run does not score; they are left out" in caplog.text
    assert h["reviewed"]["population"] == 200  # val + test
