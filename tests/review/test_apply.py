"""``python -m lemon.review apply``: the user's own table (csv, parquet, folder) with the decisions applied,
the input and the run untouched, and every refusal one line."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_data import caption, jpeg_bytes, write_image
from tiny_clip import tiny_clip_checkpoint

import run_lemon
from lemon.data.decisions import COLUMNS
from lemon.review.__main__ import main as review


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return tiny_clip_checkpoint(tmp_path_factory.mktemp("clip"))


def lemon_run(root: Path, clip: Path, *flags: str) -> Path:
    out = root / "run"
    argv = [*flags, "--real_dataset", "--knn_k", "3", "--clip_model", str(clip)]
    argv += ["--cache_dir", str(root / "cache"), "--output_dir", str(out), "--device", "cpu"]
    assert run_lemon.main([*argv, "--num_workers", "0", "--batch_size", "16"]) == 0
    return out


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, clip) -> tuple[Path, Path]:
    """A captioning csv (relative paths, an extra column, a caption with a comma) and its run."""
    root = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(5)
    rows = []
    for i in range(30):
        write_image(root / "imgs" / f"{i:03d}.jpg", rng)
        rows.append({"image": f"imgs/{i:03d}.jpg", "caption": caption(i, rng), "note": f"0{i}"})
    rows[4]["caption"] = "a cat, sitting"
    pd.DataFrame(rows).to_csv(root / "pairs.csv", index=False)
    return root / "pairs.csv", lemon_run(
        root, clip, "--dataset", "csv", "--data_path", str(root / "pairs.csv")
    )


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory, clip) -> tuple[Path, Path]:
    """A classification parquet of image bytes with integer labels named by --class_names."""
    root = tmp_path_factory.mktemp("parquet")
    rng = np.random.default_rng(6)
    rows = [{"image": jpeg_bytes(rng), "label": i % 3} for i in range(30)]
    pd.DataFrame(rows).to_parquet(root / "pairs.parquet")
    (root / "names.txt").write_text("cat\ndog\nbird\n")
    run = lemon_run(
        root, clip, "--dataset", "parquet", "--data_path", str(root / "pairs.parquet"),
        "--class_names", str(root / "names.txt"),
    )  # fmt: skip
    return root / "pairs.parquet", run


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, clip) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(8)
    for c in ("apple", "banana", "cherry"):
        for i in range(10):
            write_image(root / "fruit" / c / f"{c}_{i}.jpg", rng)
    return root / "fruit", lemon_run(
        root, clip, "--dataset", "folder", "--data_path", str(root / "fruit")
    )


def decide(run: Path, picks: list[tuple[int, str, str]], path: Path, audit: int = 0) -> Path:
    """decisions.csv for scores.csv rows (position in scores.csv, decision, corrected)."""
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    rows = [
        {
            "row": scores["row"].iloc[i],
            "image": scores["image"].iloc[i],
            "decision": d,
            "corrected": c,
            "audit": audit,
            "reviewed_at": "2025-05-01T12:00:00Z",
        }
        for i, d, c in picks
    ]
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(path, index=False)
    return path


def digest(path: Path) -> dict[str, str]:
    """Content hash of a file, or of every file under a folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def apply(run, decisions, output, *flags) -> int:
    return review(
        ["apply", "--run", str(run), "--decisions", str(decisions), "--output", str(output), *flags]
    )


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------ the tables
def test_csv_corrections_removals_and_review_columns_input_and_run_untouched(tmp_path, csv_run):
    table, run = csv_run
    before = {**digest(table), **digest(run)}
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    r = scores["row"].to_numpy()
    decisions = decide(
        run,
        [
            (0, "wrong", "a corrected caption, with a comma"),
            (1, "wrong", ""),
            (2, "right", ""),
            (3, "unsure", ""),
        ],
        tmp_path / "d.csv",
    )
    assert apply(run, decisions, tmp_path / "clean.csv") == 0
    assert {**digest(table), **digest(run)} == before
    given = pd.read_csv(table, dtype=str, keep_default_na=False)
    out = pd.read_csv(tmp_path / "clean.csv", dtype=str, keep_default_na=False)
    assert len(out) == len(given) - 1
    assert list(out.columns) == [
        *given.columns,
        "review_decision",
        "review_action",
        "review_original",
    ]
    kept = given.drop(index=r[1]).reset_index(drop=True)  # the wrong pair without a correction
    fixed = out["review_action"] == "corrected"
    assert fixed.sum() == 1
    assert out.loc[fixed, "caption"].item() == "a corrected caption, with a comma"
    assert out.loc[fixed, "review_original"].item() == given["caption"].iloc[r[0]]
    assert out.loc[fixed, "image"].item() == given["image"].iloc[r[0]]
    pd.testing.assert_frame_equal(out.loc[~fixed, list(given.columns)], kept.loc[~fixed.to_numpy()])
    assert out["note"].tolist() == kept["note"].tolist()  # "00" stays "00": cells kept as written
    actions = dict(zip(out["image"], out["review_action"]))
    assert actions[given["image"].iloc[r[2]]] == "confirmed"
    assert actions[given["image"].iloc[r[3]]] == "unsure"
    assert (out["review_action"] != "").sum() == 3


def test_mark_keeps_the_pairs_judged_wrong(tmp_path, csv_run):
    table, run = csv_run
    decisions = decide(run, [(5, "wrong", "")], tmp_path / "d.csv")
    assert apply(run, decisions, tmp_path / "marked.csv", "--mark") == 0
    out = pd.read_csv(tmp_path / "marked.csv", dtype=str, keep_default_na=False)
    row = int(pd.read_csv(run / "scores.csv")["row"].iloc[5])
    assert len(out) == len(pd.read_csv(table))
    assert out["review_action"].iloc[row] == "marked_wrong"
    assert out["review_decision"].iloc[row] == "wrong"


def test_parquet_labels_are_written_back_in_the_tables_own_terms(tmp_path, parquet_run):
    table, run = parquet_run
    before = digest(table)
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    # suggestions name classes by --class_names; the table holds integers
    assert set(scores["suggested_label"]) <= {"cat", "dog", "bird"}
    name = scores["suggested_label"].iloc[0]
    decisions = decide(run, [(0, "wrong", name), (1, "wrong", "")], tmp_path / "d.csv")
    assert apply(run, decisions, tmp_path / "clean.parquet") == 0
    assert digest(table) == before
    given, out = pd.read_parquet(table), pd.read_parquet(tmp_path / "clean.parquet")
    r0, r1 = scores["row"].iloc[0], scores["row"].iloc[1]
    assert out["label"].dtype == given["label"].dtype
    assert len(out) == len(given) - 1
    fixed = out[out["review_action"] == "corrected"]
    assert fixed["label"].tolist() == [["cat", "dog", "bird"].index(name)]
    assert fixed["review_original"].tolist() == [str(given["label"].iloc[r0])]
    assert fixed["image"].iloc[0] == given["image"].iloc[r0]  # image bytes kept
    assert given["image"].iloc[r1] not in out["image"].tolist()


def test_a_folder_is_written_as_a_list_of_its_files(tmp_path, folder_run):
    folder, run = folder_run
    before = digest(folder)
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    assert set(scores["suggested_label"]) <= {"apple", "banana", "cherry"}
    decisions = decide(
        run, [(0, "wrong", scores["suggested_label"].iloc[0]), (1, "wrong", "")], tmp_path / "d.csv"
    )
    assert apply(run, decisions, tmp_path / "clean.csv") == 0
    assert digest(folder) == before
    out = pd.read_csv(tmp_path / "clean.csv", keep_default_na=False)
    assert len(out) == 29 and list(out.columns[:2]) == ["image", "label"]
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    assert sorted([*out["image"], scores["image"].iloc[1]]) == files
    fixed = out[out["review_action"] == "corrected"]
    assert fixed["image"].tolist() == [scores["image"].iloc[0]]
    assert fixed["label"].tolist() == [scores["suggested_label"].iloc[0]]
    assert fixed["review_original"].tolist() == [scores["image"].iloc[0].split("/")[0]]
    untouched = out[out["review_action"] == ""]
    assert (untouched["label"] == untouched["image"].str.split("/").str[0]).all()


# ------------------------------------------------------------------------------------------ refusals
def test_output_refusals(tmp_path, csv_run, folder_run, capsys):
    table, run = csv_run
    decisions = decide(run, [(0, "wrong", "")], tmp_path / "d.csv")
    cases = [
        (table, [], "is the input itself"),
        (run / "clean.csv", [], "is inside the run folder"),
        (tmp_path / "clean.parquet", [], r"written as the input was \(csv\); name it with .csv"),
        (tmp_path / "nowhere" / "clean.csv", [], "does not exist; create it first"),
    ]
    (tmp_path / "taken.csv").write_text("x\n")
    (tmp_path / "dir.csv").mkdir()
    cases += [
        (tmp_path / "taken.csv", [], "exists; pass --overwrite"),
        (tmp_path / "dir.csv", [], "is a folder; name the file"),
    ]
    for output, flags, message in cases:
        assert apply(run, decisions, output, *flags) == 2
        assert re.search(message, one_line_error(capsys)), message
    assert (tmp_path / "taken.csv").read_text() == "x\n"
    assert apply(run, decisions, tmp_path / "taken.csv", "--overwrite") == 0
    folder, frun = folder_run
    fdecisions = decide(frun, [(0, "wrong", "")], tmp_path / "f.csv")
    assert apply(frun, fdecisions, folder / "list.csv") == 2
    assert "is inside the image folder" in one_line_error(capsys)


def test_decisions_that_do_not_match_the_run_are_refused_naming_the_first_row(
    tmp_path, csv_run, capsys
):
    _, run = csv_run
    d = pd.read_csv(decide(run, [(0, "wrong", ""), (1, "right", "")], tmp_path / "d.csv"))
    d.loc[1, "row"] = 999
    d.to_csv(tmp_path / "bad_row.csv", index=False)
    assert apply(run, tmp_path / "bad_row.csv", tmp_path / "o.csv") == 2
    assert "line 3: row 999 is not a scored pair of run" in one_line_error(capsys)
    d.loc[1, "row"], d.loc[0, "image"] = pd.read_csv(run / "scores.csv")["row"].iloc[1], "other.jpg"
    d.to_csv(tmp_path / "bad_image.csv", index=False)
    assert apply(run, tmp_path / "bad_image.csv", tmp_path / "o.csv") == 2
    assert "line 2: row" in (err := one_line_error(capsys)) and "but 'other.jpg'" in err


def test_an_input_that_changed_since_the_run_is_refused(tmp_path, csv_run, capsys):
    table, run = csv_run
    decisions = decide(run, [(0, "wrong", "")], tmp_path / "d.csv")
    row = int(pd.read_csv(run / "scores.csv")["row"].iloc[0])
    changed = pd.read_csv(table, dtype=str, keep_default_na=False)
    changed.loc[row, "image"] = "imgs/moved.jpg"
    changed.to_csv(tmp_path / "changed.csv", index=False)
    assert apply(run, decisions, tmp_path / "o.csv", "--input", str(tmp_path / "changed.csv")) == 2
    assert (
        f"Row {row} of" in (err := one_line_error(capsys)) and "holds image 'imgs/moved.jpg'" in err
    )
    changed.iloc[:row].to_csv(tmp_path / "short.csv", index=False)
    assert apply(run, decisions, tmp_path / "o.csv", "--input", str(tmp_path / "short.csv")) == 2
    assert f"has {row} rows, but the decisions name row {row}" in one_line_error(capsys)
    changed.drop(columns="caption").to_csv(tmp_path / "nocol.csv", index=False)
    assert apply(run, decisions, tmp_path / "o.csv", "--input", str(tmp_path / "nocol.csv")) == 2
    assert "lacks its image column 'image' or its caption / label column" in one_line_error(capsys)
    assert apply(run, decisions, tmp_path / "o.csv", "--input", str(tmp_path / "none.csv")) == 2
    assert "is not found from here; pass --input" in one_line_error(capsys)
    (tmp_path / "adir").mkdir()
    assert apply(run, decisions, tmp_path / "o.csv", "--input", str(tmp_path / "adir")) == 2
    assert "Cannot read the run's input" in one_line_error(capsys)


def test_runs_apply_cannot_write_back_are_refused(tmp_path, csv_run, small_npz, capsys):
    _, run = csv_run
    decisions = decide(run, [(0, "wrong", "")], tmp_path / "d.csv")
    assert apply(tmp_path, decisions, tmp_path / "o.csv") == 2
    assert "is not a lemon run folder" in one_line_error(capsys)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "done").unlink()
    assert apply(unfinished, decisions, tmp_path / "o.csv") == 2
    assert "is not finished (no 'done' file)" in one_line_error(capsys)
    out = tmp_path / "emb"
    argv = ["--dataset", "embeddings", "--embeddings", str(small_npz), "--knn_k", "10"]
    assert run_lemon.main([*argv, "--output_dir", str(out)]) == 0
    assert apply(out, decisions, tmp_path / "o.csv") == 2
    assert "scored --dataset embeddings, which has no table of yours" in one_line_error(capsys)
