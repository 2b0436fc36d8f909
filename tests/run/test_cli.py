"""run_lemon end to end: the run outputs, summary table, fixed hyper-parameters, overwrite rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import run_lemon


def _run(tmp_path, *args, name="run"):
    out = tmp_path / name
    code = run_lemon.main(["--output_dir", str(out), *args])
    return code, out


def test_embeddings_run_writes_every_output(tmp_path, small_npz, capsys):
    code, out = _run(
        tmp_path, "--dataset", "embeddings", "--embeddings", str(small_npz), "--knn_k", "10"
    )
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {
        "args.json",
        "log.txt",
        "scores.csv",
        "hparams.json",
        "metrics.json",
        "neighbours.npz",
        "dropped.csv",
        "done",
    }
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns[:9]) == [
        "split",
        "idx",
        "row",
        "clean_label",
        "observed_label",
        "text",
        "is_mislabel",
        "score",
        "d_mm",
    ]
    assert scores.groupby("split").size().to_dict() == {"train": 400, "val": 50, "test": 50}
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "test/AUROC",
        "test/AUPRC",
        "test/F1_optimal",
        "test/F1_prevalence",
        "test/F1_heuristic",
        "val/threshold_optimal",
    ):
        assert key in metrics
    assert metrics["test/AUROC"] > 0.8
    hparams = json.loads((out / "hparams.json").read_text())
    assert hparams["selection"] == "lemon_opt" and hparams["knn_k"] == 10
    assert metrics["val/threshold_optimal"] == pytest.approx(hparams["thresholds"]["optimal"])
    args = json.loads((out / "args.json").read_text())
    assert args["knn_k"] == 10 and "environment" in args
    assert "AUROC" in capsys.readouterr().out
    # the done marker is written after every result file (the log may still get its last line)
    results = [p for p in out.iterdir() if p.name not in ("done", "log.txt")]
    assert (out / "done").stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in results)


def test_fixed_hyperparameters_are_used_as_given(tmp_path, reference):
    h = reference.hparams
    args = [
        "--dataset",
        "embeddings",
        "--embeddings",
        str(reference.inputs_path),
        "--knn_k",
        str(reference.config["knn_k"]),
        "--dist_type",
        reference.config["dist_type"],
    ]
    if reference.config["use_discrete_for_text"]:
        args += ["--use_discrete_for_text", "--legacy_discrete_weighting"]
    for name, value in h.items():
        args += [f"--{name}", repr(value)]
    code, out = _run(tmp_path, *args)
    assert code == 0
    scores = pd.read_csv(out / "scores.csv")
    val = scores[scores.split == "val"]
    np.testing.assert_allclose(
        val.score, reference.outputs["pred_score"][reference.rows("val")], atol=1e-5
    )
    assert json.loads((out / "hparams.json").read_text())["selection"] == "fixed"


def test_synthetic_dataset_and_skip_train(tmp_path):
    code, out = _run(
        tmp_path, "--dataset", "synthetic", "--n_synthetic", "400", "--skip_train", "--lemon_fix"
    )
    assert code == 0
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores.split) == {"val", "test"}
    assert json.loads((out / "hparams.json").read_text())["knn_k"] == 30


def test_real_dataset_mode_has_no_ground_truth(tmp_path, small_npz):
    code, out = _run(tmp_path, "--dataset", "synthetic", "--n_synthetic", "400", "--real_dataset")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test/AUROC" not in metrics and "test/n_flagged_heuristic" in metrics
    assert json.loads((out / "hparams.json").read_text())["selection"] == "lemon_fix"


def test_subset_val_set(tmp_path, small_npz):
    code, out = _run(
        tmp_path,
        "--dataset",
        "embeddings",
        "--embeddings",
        str(small_npz),
        "--subset_val_set",
        "20",
    )
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["val/n"] == 20


def test_finished_run_is_not_overwritten_without_flag(tmp_path, small_npz, capsys):
    args = ["--dataset", "embeddings", "--embeddings", str(small_npz), "--lemon_fix"]
    assert _run(tmp_path, *args)[0] == 0
    before = (tmp_path / "run" / "scores.csv").read_text()
    code, out = _run(tmp_path, *args)
    assert code == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (out / "scores.csv").read_text() == before
    assert _run(tmp_path, *args, "--overwrite")[0] == 0
