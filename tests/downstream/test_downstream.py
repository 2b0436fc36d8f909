"""Downstream training on filtered data (python -m lemon.downstream) and its table in lemon.tables.aggregate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lemon.core.errors import LemonError
from lemon.downstream import DownstreamConfig, main, run_downstream
from lemon.downstream.filters import ScoredRun, kept_rows
from lemon.downstream.models import classify, retrieval_recall
from lemon.run.config import RunConfig
from lemon.run.pipeline import run
from lemon.tables import aggregate


def scored(scores: list[float], threshold: float | None = None) -> ScoredRun:
    frame = pd.DataFrame({"idx": np.arange(len(scores)), "score": scores})
    return ScoredRun(Path("run"), {}, frame, threshold)


# ---------------------------------------------------------------------------------------------- filters
def test_filters_keep_the_lowest_scores_ties_by_index():
    run_ = scored([0.9, 0.1, 0.5, 0.5, 0.3])
    np.testing.assert_array_equal(kept_rows(run_, "drop_top", 0.4, None, 0), [1, 2, 4])
    np.testing.assert_array_equal(kept_rows(run_, "keep_n", 0, 2, 0), [1, 4])
    np.testing.assert_array_equal(kept_rows(run_, "keep_n", 0, 4, 0), [1, 2, 3, 4])
    np.testing.assert_array_equal(kept_rows(run_, "none", 0, None, 0), [0, 1, 2, 3, 4])
    flagged = scored([0.9, 0.1, 0.5, 0.5, 0.3], threshold=0.5)  # flagged: score >= threshold
    np.testing.assert_array_equal(kept_rows(flagged, "flagged", 0, None, 0), [1, 4])


def test_random_drop_is_seeded_and_ignores_the_scores():
    a = kept_rows(scored(list(range(100))), "random", 0.3, None, 1)
    b = kept_rows(scored(list(range(100))[::-1]), "random", 0.3, None, 1)
    c = kept_rows(scored(list(range(100))), "random", 0.3, None, 2)
    assert len(a) == 70 and np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_filters_are_refused():
    with pytest.raises(LemonError, match="keeps 7 pairs; the run has 5 train pairs"):
        kept_rows(scored([1, 2, 3, 4, 5]), "keep_n", 0, 7, 0)
    with pytest.raises(LemonError, match="no flagging threshold"):
        kept_rows(scored([1, 2]), "flagged", 0, None, 0)
    with pytest.raises(LemonError, match="keeps no train pair"):
        kept_rows(scored([1, 2], threshold=0.5), "flagged", 0, None, 0)
    base = dict(scores="x", output_dir="y")
    with pytest.raises(LemonError, match="--keep_n goes with --filter keep_n"):
        DownstreamConfig(**base, filter="keep_n").validate()
    with pytest.raises(LemonError, match=r"--fraction must be in \[0, 1\), got 1.5"):
        DownstreamConfig(**base, filter="random", fraction=1.5).validate()


# ---------------------------------------------------------------------------------------------- models
def test_retrieval_recall_hand_computed():
    # images 0 and 1 share caption A; image 2 has caption B. Image 1 is closer to B than to A.
    images = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    captions = np.array([[1.0, 0.0], [0.0, 1.0]])  # A, B
    out = retrieval_recall(images, captions, np.array([0, 0, 1]))
    assert out["test/i2t_R@1"] == pytest.approx(2 / 3)  # image 1 ranks B first
    assert out["test/i2t_R@5"] == 1.0
    # text -> image: A's best image is image 0 (rank 0); B's own image 2 ranks first too
    assert out["test/t2i_R@1"] == 1.0


def test_classifier_learns_separable_labels():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    x = np.eye(3)[y] + 0.1 * rng.normal(size=(90, 3))
    out = classify(x[::2], y[::2], x[1::2], y[1::2], c=10.0, seed=0)
    assert out["test/accuracy"] == 1.0 and out["test/macro_f1"] == 1.0


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scored") / "run"
    run(RunConfig(output_dir=str(out), dataset="synthetic", n_synthetic=400, knn_k=5))
    return out


def test_classification_downstream_trains_on_the_kept_noisy_labels(synthetic_run, tmp_path, capsys):
    from sklearn.linear_model import LogisticRegression

    from lemon.data.synthetic import make_synthetic_embeddings

    out = tmp_path / "ds"
    argv = ["--scores", str(synthetic_run), "--filter", "drop_top", "--output_dir", str(out)]
    assert main(argv) == 0
    assert "drop top 40%" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    scores = pd.read_csv(synthetic_run / "scores.csv")
    train = scores[scores["split"] == "train"]
    kept = train.sort_values(["score", "idx"]).head(240)
    assert metrics["train/n_kept"] == 240 == len(pd.read_csv(out / "kept.csv"))
    assert metrics["train/kept_noise_rate"] == pytest.approx(kept["is_mislabel"].mean())
    # the same classifier, trained here on the same rows of the generator's arrays
    arrays = make_synthetic_embeddings(400)
    unit = arrays["train_img"] / np.linalg.norm(arrays["train_img"], axis=1, keepdims=True)
    test = arrays["test_img"] / np.linalg.norm(arrays["test_img"], axis=1, keepdims=True)
    rows = np.sort(kept["idx"].to_numpy())
    model = LogisticRegression(C=10.0, max_iter=2000, random_state=0)
    model.fit(unit[rows].astype(np.float32), arrays["train_noisy_label"][rows])
    expected = np.mean(model.predict(test.astype(np.float32)) == arrays["test_label"])
    assert metrics["test/accuracy"] == pytest.approx(expected, abs=1 / 50)
    args = json.loads((out / "args.json").read_text())
    assert args["script"] == "lemon.downstream" and args["dataset"] == "synthetic"
    assert args["scorer"] == "lemon" and args["filter_label"] == "drop top 40%"
    assert (out / "done").is_file()
    assert main(argv) == 2  # finished: refused without --overwrite


def test_filtering_with_lemon_beats_no_filter_on_synthetic(synthetic_run, tmp_path):
    common = dict(scores=str(synthetic_run))
    lemon = run_downstream(DownstreamConfig(**common, output_dir=str(tmp_path / "a")))
    unfiltered = run_downstream(
        DownstreamConfig(**common, filter="none", output_dir=str(tmp_path / "b"))
    )
    assert lemon["train/kept_noise_rate"] < unfiltered["train/kept_noise_rate"] == 0.4
    assert lemon["test/accuracy"] > unfiltered["test/accuracy"]


def test_captioning_downstream_trains_a_clip_and_measures_recall(tmp_path):
    from tiny_clip import tiny_clip_checkpoint

    scored_dir = tmp_path / "scored"
    run(
        RunConfig(
            output_dir=str(scored_dir),
            dataset="demo",
            clip_model=str(tiny_clip_checkpoint(tmp_path, "open_clip")),
            cache_dir=str(tmp_path / "cache"),
            num_workers=0,
            skip_hparam_optim=True,
        )
    )
    out = tmp_path / "ds"
    metrics = run_downstream(
        DownstreamConfig(
            scores=str(scored_dir),
            filter="keep_n",
            keep_n=300,
            train_model="lemon-tiny",
            train_epochs=1,
            train_batch_size=100,
            num_workers=0,
            output_dir=str(out),
        )
    )
    assert metrics["train/n_kept"] == 300 and metrics["test/n"] == 1000
    for side in ("i2t", "t2i"):
        r1, r5, r10 = (metrics[f"test/{side}_R@{k}"] for k in (1, 5, 10))
        assert 0 <= r1 <= r5 <= r10 <= 1
    assert (out / "clip" / "open_clip_model.safetensors").is_file()


def test_a_run_without_train_scores_or_unfinished_is_refused(tmp_path, small_npz):
    skipped = tmp_path / "skipped"
    run(
        RunConfig(
            output_dir=str(skipped),
            dataset="embeddings",
            embeddings=str(small_npz),
            skip_train=True,
            skip_hparam_optim=True,
        )
    )
    cfg = DownstreamConfig(scores=str(skipped), output_dir=str(tmp_path / "ds"))
    with pytest.raises(LemonError, match=r"has no train rows .*--skip_train"):
        run_downstream(cfg)
    (skipped / "done").unlink()
    with pytest.raises(LemonError, match="not a finished run_lemon run"):
        run_downstream(cfg)


# ---------------------------------------------------------------------------------------------- table
def test_aggregate_prints_the_downstream_table(tmp_path, capsys):
    root = tmp_path / "sweep"
    for seed in (0, 1):
        scored_dir = root / "scores" / f"s{seed}"
        run(
            RunConfig(
                output_dir=str(scored_dir),
                dataset="synthetic",
                n_synthetic=200,
                data_seed=seed,
                knn_k=5,
                skip_hparam_optim=True,
            )
        )
        for rule in ("drop_top", "none", "random"):
            run_downstream(
                DownstreamConfig(
                    scores=str(scored_dir),
                    filter=rule,
                    output_dir=str(root / "ds" / f"{rule}{seed}"),
                )
            )
    df, _ = aggregate.load_records(root)
    table = aggregate.build_tables(df)["downstream"]
    assert list(table["method"]) == sorted(table["method"], key=lambda m: m) or len(table) == 3
    by_method = table.set_index("method")
    assert set(by_method.index) == {"lemon_skip_optim", "no filter", "random"}
    assert (by_method["runs"] == 2).all()
    assert by_method.loc["no filter", "kept %"] == 100 and by_method.loc["random", "kept %"] == 60
    accuracies = [
        json.loads((root / "ds" / f"drop_top{s}" / "metrics.json").read_text())["test/accuracy"]
        for s in (0, 1)
    ]
    assert by_method.loc["lemon_skip_optim", "accuracy mean"] == pytest.approx(
        100 * np.mean(accuracies)
    )
    assert aggregate.main(["--output_root", str(root)]) == 0
    assert "== downstream" in capsys.readouterr().out
