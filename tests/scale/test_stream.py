"""The post-embedding stage at scale (lemon/scale/stream.py, lemon/core/npy.py): block-by-block scoring gives the
whole-split results, memory-mapped stores give the in-memory features, outputs are written in blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import run_lemon
from lemon.core.errors import LemonError
from lemon.core.npy import (
    NpyWriter,
    check_rows,
    finite_rows,
    is_mapped,
    open_rows,
    release,
    take_rows,
)
from lemon.data import synthetic
from lemon.data.embeddings import features_from_arrays
from lemon.data.features import normalize_rows
from lemon.data.synthetic import make_synthetic_embeddings, synthetic_store
from lemon.method.hparams import LEMON_FIX_HPARAMS
from lemon.scale.stream import optional_outputs, score_splits, write_scores
from lemon.scorers import SCORERS
from lemon.scorers.base import ScoringContext
from lemon.scorers.lemon import LemonOptions

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def arrays():
    return make_synthetic_embeddings(1200)


@pytest.mark.parametrize("name", ["lemon", "clip_sim", "deep_knn", "clip_logits"])
def test_blocks_score_exactly_as_whole_splits(arrays, name):
    """A streamable scorer's per-block results, concatenated, are the whole split's."""
    options = LemonOptions(k=10, fixed=LEMON_FIX_HPARAMS, select=False)
    scorer = SCORERS.get(name)(options)
    assert scorer.streamable
    features = features_from_arrays(arrays)
    ctx = ScoringContext(features, knn_backend="torch")
    hparams = scorer.fit(ctx)
    whole = {s: scorer.score(ctx, s, hparams) for s in SPLITS}
    blocked = score_splits(
        scorer, ScoringContext(features, knn_backend="torch"), SPLITS, hparams, block_rows=170
    )
    for s in SPLITS:
        assert whole[s].keys() == blocked[s].keys()
        for key, value in whole[s].items():
            if np.ndim(value) == 2:
                np.testing.assert_array_equal(blocked[s][key], value)  # neighbour ids
            else:
                np.testing.assert_allclose(blocked[s][key], value, rtol=0, atol=1e-9)


def test_val_neighbours_searched_while_fitting_are_reused_by_its_blocks(arrays):
    features = features_from_arrays(arrays)
    ctx = ScoringContext(features, knn_backend="torch")
    _, idx = ctx.neighbours("val", "img", 10)
    block = ctx.block("val", 40, 90)
    _, bidx = block.neighbours("val", "img", 5)
    np.testing.assert_array_equal(bidx, idx[40:90, :5])
    assert ctx.block("val", 0, len(features.splits["val"])) is ctx  # the whole split: no copy


def test_neighbour_arrays_are_dropped_unless_kept(arrays):
    scorer = SCORERS.get("lemon")(LemonOptions(k=5, fixed=LEMON_FIX_HPARAMS, select=False))
    ctx = ScoringContext(features_from_arrays(arrays), knn_backend="torch")
    out = score_splits(scorer, ctx, ("test",), LEMON_FIX_HPARAMS, 50, keep_neighbours=False)
    assert set(out["test"]) == {
        "score",
        "d_mm",
        "s_n",
        "s_m",
        "suggested_class",
        "suggestion_confidence",
    }
    kept = score_splits(scorer, ctx, ("test",), LEMON_FIX_HPARAMS, 50, keep_neighbours=True)
    assert kept["test"]["idx_n"].dtype == np.int32 and kept["test"]["idx_n"].shape == (150, 5)


def test_synthetic_store_is_the_in_memory_data_memory_mapped(tmp_path, monkeypatch):
    """Drawn in several blocks, written to .npy and mapped: the features equal the in-memory ones bit for
    bit (rows stored normalised are not normalised again), and stay mapped (no copy)."""
    monkeypatch.setattr(synthetic, "GEN_BLOCK", 500)
    stored = features_from_arrays(synthetic_store(tmp_path, 1600))
    memory = features_from_arrays(make_synthetic_embeddings(1600))
    for s in SPLITS:
        a, b = stored.splits[s], memory.splits[s]
        assert is_mapped(a.img) and is_mapped(a.txt) and not is_mapped(b.img)
        np.testing.assert_array_equal(a.img, b.img)
        np.testing.assert_array_equal(a.txt, b.txt)
        np.testing.assert_array_equal(a.block(100, 700).img, b.img[100:700])
        np.testing.assert_array_equal(a.observed, b.observed)
    again = synthetic_store(tmp_path, 1600)  # generated once: the second call reads the files
    assert is_mapped(again["train_img"])


def test_a_large_run_streams_from_the_store_with_the_scores_of_an_in_memory_run(
    tmp_path, monkeypatch
):
    """Above the in-memory limit (lowered here) the synthetic data is generated into the cache, read
    memory-mapped and scored block by block: scores.csv equals the in-memory run's; neighbours.npz is left
    out and scores.parquet written once the run counts as large."""
    import lemon.scale.stream as stream

    common = ["--dataset", "synthetic", "--n_synthetic", "1600", "--lemon_fix"]
    assert run_lemon.main([*common, "--output_dir", str(tmp_path / "memory")]) == 0
    monkeypatch.setattr(synthetic, "IN_MEMORY_MAX", 1000)
    monkeypatch.setattr(stream, "LARGE_RUN_ROWS", 1000)
    args = ["--cache_dir", str(tmp_path / "cache"), "--stream_block", "256"]
    assert run_lemon.main([*common, *args, "--output_dir", str(tmp_path / "mapped")]) == 0
    a = pd.read_csv(tmp_path / "memory" / "scores.csv")
    b = pd.read_csv(tmp_path / "mapped" / "scores.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-9)
    assert (tmp_path / "memory" / "neighbours.npz").is_file()
    assert not (tmp_path / "mapped" / "neighbours.npz").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "mapped" / "scores.parquet"), b)
    assert list((tmp_path / "cache" / "synthetic").iterdir())  # the generated store


def test_optional_outputs():
    assert optional_outputs("auto", "auto", 10) == (True, False)
    large = 10**7
    assert optional_outputs("auto", "never", large) == (False, False)
    assert optional_outputs("always", "never", large) == (True, False)
    assert optional_outputs("never", "always", 10) == (False, True)
    with pytest.raises(LemonError, match=r"Unknown save_neighbours 'sometimes'\. Available: auto"):
        optional_outputs("sometimes", "auto", 10)


def test_scores_written_in_blocks_are_the_whole_frame(tmp_path):
    """Blocks written as they come give the files of the whole frame, also where a column is all None in
    one split and numbers in another (the parquet type comes from the probe rows, one per split)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "split": np.repeat(["train", "val"], 50),
            "idx": np.arange(100),
            "text": [f'a, "quoted" text {i}' for i in range(100)],
            "score": rng.normal(size=100),
            "clean_label": [None] * 50 + list(range(50)),
        }
    )
    pieces = [frame.iloc[a : a + 7] for a in range(0, 100, 7)]
    probe = frame.iloc[[0, 50]]
    names = write_scores(tmp_path, iter(pieces), probe, parquet=True)
    assert names == ["scores.csv", "scores.parquet"]
    assert (tmp_path / "scores.csv").read_text() == frame.to_csv(index=False)
    parquet = pd.read_parquet(tmp_path / "scores.parquet")
    assert parquet["clean_label"].iloc[50:].tolist() == list(range(50))
    assert parquet["clean_label"].iloc[:50].isna().all()
    pd.testing.assert_frame_equal(
        parquet.drop(columns="clean_label"), frame.drop(columns="clean_label")
    )
    write_scores(tmp_path, iter([]), probe)
    assert (tmp_path / "scores.csv").read_text() == frame.iloc[:0].to_csv(index=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_failed_block_leaves_the_files_of_the_run_before(tmp_path):
    (tmp_path / "scores.csv").write_text("earlier\n")
    frame = pd.DataFrame({"split": ["train"] * 4, "score": [0.1, 0.2, 0.3, 0.4]})

    def failing():
        yield frame.iloc[:2]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_scores(tmp_path, failing(), frame.iloc[:1], parquet=True)
    assert (tmp_path / "scores.csv").read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


def test_npy_writer_is_atomic_and_counts_rows(tmp_path):
    path = tmp_path / "x.npy"
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    with NpyWriter(path, (10, 4), np.float32) as w:
        w.write(x[:3])
        w.write(x[3:])
    np.testing.assert_array_equal(open_rows(path), x)
    with pytest.raises(RuntimeError), NpyWriter(path, (10, 4), np.float32) as w:
        w.write(x[:5] * 0)
        raise RuntimeError("killed half way")
    np.testing.assert_array_equal(np.load(path), x)  # the old file, untouched
    with (
        pytest.raises(ValueError, match="5 rows written of 10"),
        NpyWriter(path, (10, 4), np.float32) as w,
    ):
        w.write(x[:5])
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def test_mapped_rows_are_checked_and_released(tmp_path):
    x = normalize_rows(np.random.default_rng(1).normal(size=(300, 8)), "x")
    np.save(tmp_path / "unit.npy", x)
    np.save(tmp_path / "raw.npy", x * 3)
    np.save(tmp_path / "half.npy", x.astype(np.float16))
    assert check_rows(open_rows(tmp_path / "unit.npy"), "x")
    assert not check_rows(open_rows(tmp_path / "raw.npy"), "x")  # not unit: the features copy
    assert check_rows(open_rows(tmp_path / "half.npy"), "x")  # unit within float16 precision
    bad = x.copy()
    bad[123] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(LemonError, match="NaN/inf values \\(first: row 123\\)"):
        check_rows(open_rows(tmp_path / "bad.npy"), "image embeddings")
    np.testing.assert_array_equal(
        finite_rows(open_rows(tmp_path / "bad.npy")), ~np.isnan(bad[:, 0])
    )
    mapped = open_rows(tmp_path / "unit.npy")
    release(mapped, 0, 300)  # pages handed back; the data reads the same afterwards
    np.testing.assert_array_equal(mapped, x)


def _resident_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0]:  # a mapping's first line
            inside = line.endswith(str(path))
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_a_scattered_gather_from_a_mapped_split_leaves_no_pages_resident(tmp_path):
    """A reference subset or a sample of a million-row split must not keep the whole file in memory."""
    x = np.random.default_rng(2).normal(size=(8192, 256)).astype(np.float32)  # 8 MiB
    np.save(tmp_path / "x.npy", x)
    mapped = open_rows(tmp_path / "x.npy")
    index = np.sort(np.random.default_rng(3).choice(len(x), 2000, replace=False))
    rows = take_rows(mapped, index)
    np.testing.assert_array_equal(rows, x[index])
    assert not is_mapped(rows)
    assert _resident_kb(tmp_path / "x.npy") <= 8
    np.testing.assert_array_equal(take_rows(x, index), x[index])  # in-memory arrays: a plain gather


def test_float16_store_is_read_as_normalised_float32_blocks(tmp_path, arrays):
    for s in SPLITS:
        for m in ("img", "txt"):
            np.save(
                tmp_path / f"{s}_{m}.npy", normalize_rows(arrays[f"{s}_{m}"], m).astype(np.float16)
            )
    mapped = dict(arrays)
    mapped.update(
        {f"{s}_{m}": open_rows(tmp_path / f"{s}_{m}.npy") for s in SPLITS for m in ("img", "txt")}
    )
    f = features_from_arrays(mapped)
    assert f.splits["train"].img.dtype == np.float16 and is_mapped(f.splits["train"].img)
    block = f.splits["train"].block(0, 100)
    assert block.img.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(block.img, axis=1), 1.0, atol=1e-6)
    full = features_from_arrays(arrays).splits["train"].img[:100]
    np.testing.assert_allclose(block.img, full, atol=2e-3)


def test_scale_flags_are_checked():
    with pytest.raises(LemonError, match="--knn_nprobe only applies to the IVF search"):
        run_lemon.check(
            [
                "--dataset",
                "synthetic",
                "--output_dir",
                "x",
                "--knn_backend",
                "torch",
                "--knn_nprobe",
                "4",
            ]
        )
    with pytest.raises(LemonError, match="stream_block must be >= 1, got 0"):
        run_lemon.check(["--dataset", "synthetic", "--output_dir", "x", "--stream_block", "0"])


def test_recall_is_measured_for_approximate_search_only(tmp_path):
    pytest.importorskip("faiss")
    common = ["--dataset", "synthetic", "--n_synthetic", "800", "--lemon_fix", "--skip_train"]
    assert (
        run_lemon.main(
            [
                *common,
                "--output_dir",
                str(tmp_path / "a"),
                "--knn_backend",
                "ivf",
                "--knn_nlist",
                "8",
                "--knn_nprobe",
                "8",
                "--knn_recall_sample",
                "60",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    hparams = json.loads((tmp_path / "a" / "hparams.json").read_text())
    # all lists probed: the IVF search is exhaustive, so its neighbours are the exact ones
    assert metrics["search/knn_recall_at_k"] == 1.0 and metrics["search/knn_recall_sample"] == 60
    assert hparams["knn_backend"] == "ivf" and "nprobe=8" in hparams["knn_search"]
    assert run_lemon.main([*common, "--output_dir", str(tmp_path / "b")]) == 0
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert not any(k.startswith("search/") for k in metrics)  # exact float32: nothing to measure
    assert json.loads((tmp_path / "b" / "hparams.json").read_text())["knn_backend"] == "torch"


def test_scores_written_block_by_block_are_the_runs_whole_frame(tmp_path):
    """A run writes scores.csv and scores.parquet block by block (here 64 rows), never holding all rows as
    one frame: the files equal the whole frame (RunResult.scores), also with train unlabelled (its
    clean_label and is_mislabel columns empty) and val and test labelled."""
    from lemon.run.config import RunConfig
    from lemon.run.pipeline import run

    arrays = make_synthetic_embeddings(400)
    for key in ("train_label", "train_is_mislabel"):
        del arrays[key]
    np.savez(tmp_path / "inputs.npz", **arrays)
    cfg = RunConfig(
        dataset="embeddings",
        embeddings=str(tmp_path / "inputs.npz"),
        output_dir=str(tmp_path / "out"),
        lemon_fix=True,
        stream_block=64,
        scores_parquet="always",
    )
    result = run(cfg)
    whole = result.scores
    assert len(whole) == 500 and whole["clean_label"].iloc[:400].isna().all()
    assert whole["is_mislabel"].iloc[400:].notna().all()
    assert (tmp_path / "out" / "scores.csv").read_text() == whole.to_csv(index=False)
    parquet = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    assert parquet["is_mislabel"].iloc[400:].tolist() == whole["is_mislabel"].iloc[400:].tolist()
    assert parquet["flagged"].tolist() == whole["flagged"].tolist()
    np.testing.assert_array_equal(parquet["score"], whole["score"].astype(float))
