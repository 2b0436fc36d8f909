"""Python API (lemon/api.py): find_label_issues."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import lemon
from lemon.data.synthetic import make_synthetic_embeddings
from lemon.errors import LemonError


@pytest.fixture(scope="module")
def data():
    return make_synthetic_embeddings(800)


def test_lemon_fix_without_known_labels(data):
    df = lemon.find_label_issues(data["train_img"], data["train_txt"], data["train_noisy_label"])
    assert len(df) == 800 and df.attrs["selection"] == "lemon_fix"
    assert list(df.columns) == [
        "lemon_score",
        "label_quality",
        "d_mm",
        "s_n",
        "s_m",
        "given_label",
        "is_label_issue",
    ]
    np.testing.assert_allclose(df.lemon_score, df.d_mm + 5 * df.s_n + 5 * df.s_m)
    # label quality is cleanlab's direction: lower = worse
    assert np.all(np.diff(df.label_quality.to_numpy()[np.argsort(df.lemon_score.to_numpy())]) <= 0)
    assert roc_auc_score(data["train_is_mislabel"], df.lemon_score) > 0.9
    assert df.is_label_issue.to_numpy().sum() == (df.lemon_score >= df.attrs["threshold"]).sum()


def test_lemon_opt_with_known_labels(data):
    known = np.arange(150)
    df = lemon.find_label_issues(
        data["train_img"],
        data["train_txt"],
        data["train_noisy_label"],
        known_issue_idx=known,
        known_is_issue=data["train_is_mislabel"][known],
    )
    assert df.attrs["selection"] == "lemon_opt"
    assert roc_auc_score(data["train_is_mislabel"], df.lemon_score) > 0.9


def test_captions_and_numeric_threshold(data):
    texts = [f"caption {i % 7}" for i in range(800)]
    df = lemon.find_label_issues(data["train_img"], data["train_txt"], texts, threshold=1.0, k=10)
    assert df.attrs["threshold"] == 1.0 and df.given_label[3] == "caption 3"


def test_length_mismatch_is_a_clear_error(data):
    with pytest.raises(LemonError, match="must have the same length, got 800, 800 and 799"):
        lemon.find_label_issues(
            data["train_img"], data["train_txt"], data["train_noisy_label"][:-1]
        )


def test_unknown_threshold_name(data):
    with pytest.raises(LemonError, match="threshold must be a number or one of auto"):
        lemon.find_label_issues(
            data["train_img"][:100],
            data["train_txt"][:100],
            data["train_noisy_label"][:100],
            threshold="optimal",
            k=5,
        )
