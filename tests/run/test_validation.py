"""The bad-input matrix of the core issue: one clear one-line error each (exit code 2), or a warning."""

from __future__ import annotations

import json

import numpy as np
import pytest

import run_lemon
from lemon.data.synthetic import make_synthetic_embeddings


def _npz(tmp_path, **changes):
    arrays = make_synthetic_embeddings(400)
    arrays.update(changes)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


def _error(tmp_path, capsys, *args) -> str:
    code = run_lemon.main(["--output_dir", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return line


def test_k_not_smaller_than_reference(tmp_path, capsys):
    msg = _error(
        tmp_path,
        capsys,
        "--dataset",
        "embeddings",
        "--embeddings",
        str(_npz(tmp_path)),
        "--knn_k",
        "400",
    )
    assert "knn_k=400 but the reference set has 400 samples (k must be < 400)" in msg


def test_mismatched_lengths(tmp_path, capsys):
    arrays = make_synthetic_embeddings(400)
    path = _npz(tmp_path, train_txt=arrays["train_txt"][:-2])
    msg = _error(tmp_path, capsys, "--dataset", "embeddings", "--embeddings", str(path))
    assert "must have the same length, got 400 and 398" in msg


@pytest.mark.parametrize(
    "bad, expected",
    [(np.nan, "NaN/inf values in 1 rows"), (np.inf, "NaN/inf"), (0.0, "zero-norm rows")],
)
def test_non_finite_or_zero_embeddings(tmp_path, capsys, bad, expected):
    img = make_synthetic_embeddings(400)["val_img"].copy()
    img[3] = bad if bad != 0.0 else 0.0
    if bad != 0.0:
        img[3, 1:] = 1.0
    msg = _error(
        tmp_path,
        capsys,
        "--dataset",
        "embeddings",
        "--embeddings",
        str(_npz(tmp_path, val_img=img)),
    )
    assert expected in msg and "row 3" in msg


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--dataset", "cifar1O", "Unknown dataset 'cifar1O'. Available:"),
        ("--ablation", "tau3", "Unknown ablation 'tau3'. Available: none, tau_1"),
        ("--dist_type", "manhattan", "Unknown dist_type 'manhattan'. Available: cosine, euclidean"),
        ("--scorer", "lemonade", "Unknown scorer 'lemonade'. Available:"),
    ],
)
def test_unknown_names(tmp_path, capsys, flag, value, expected):
    assert expected in _error(tmp_path, capsys, "--dataset", "synthetic", flag, value)


def test_real_dataset_requires_zero_noise(tmp_path, capsys):
    msg = _error(
        tmp_path, capsys, "--dataset", "synthetic", "--real_dataset", "--noise_level", "0.4"
    )
    assert "--real_dataset requires --noise_level 0, got 0.4." in msg


def test_noise_level_range(tmp_path, capsys):
    assert "noise_level must be in [0, 1), got 1.2." in _error(
        tmp_path, capsys, "--dataset", "synthetic", "--noise_level", "1.2"
    )


def test_missing_embeddings_file(tmp_path, capsys):
    msg = _error(
        tmp_path, capsys, "--dataset", "embeddings", "--embeddings", str(tmp_path / "nope.npz")
    )
    assert "Embeddings file not found" in msg


def test_embeddings_dataset_refuses_noise_flags(tmp_path, capsys):
    msg = _error(
        tmp_path,
        capsys,
        "--dataset",
        "embeddings",
        "--embeddings",
        str(_npz(tmp_path)),
        "--noise_type",
        "symmetric",
    )
    assert "Noise type 'symmetric' is not supported for dataset 'embeddings'" in msg


@pytest.mark.parametrize("value", [0, 1])
def test_val_with_a_single_class_falls_back_with_warning(tmp_path, capsys, value):
    arrays = make_synthetic_embeddings(400)
    path = _npz(tmp_path, val_is_mislabel=np.full_like(arrays["val_is_mislabel"], value))
    code = run_lemon.main(
        [
            "--output_dir",
            str(tmp_path / "out"),
            "--dataset",
            "embeddings",
            "--embeddings",
            str(path),
        ]
    )
    assert code == 0
    hparams = json.loads((tmp_path / "out" / "hparams.json").read_text())
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert hparams["selection"] == "lemon_fix_fallback" and hparams["selected_val"] is None
    assert metrics["val/AUROC"] is None
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "falling back to LEMoN_FIX" in log
