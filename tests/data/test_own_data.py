"""Your own files, every row accounted for: hand-made tables and folders in their real on-disk formats.

Each test builds the CSV / image folder a user would have under tmp_path and goes through the user's path
(``run_lemon.main``, ``python -m lemon.data check``, the loaders); models are tiny random checkpoints.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_data import write_image
from tiny_clip import tiny_clip_checkpoint

import run_lemon
from lemon.core.errors import LemonError
from lemon.data import DATASETS
from lemon.data.__main__ import main as data_cli
from lemon.data.base import DataOptions, TableOptions
from lemon.data.loading import load_splits
from lemon.data.splitting import MIN_SPLIT_ITEMS
from lemon.run.config import RunConfig
from lemon.run.load import resolve_k
from lemon.train import TrainConfig, load_training_pairs


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return tiny_clip_checkpoint(tmp_path_factory.mktemp("clip"))


def images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` distinct small JPEGs in ``folder``; their names."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_image(folder / f"{i:03d}.jpg", rng)
    return [f"{i:03d}.jpg" for i in range(n)]


def load(name: str, **table) -> object:
    """The dataset's splits, loaded as a run loads them."""
    options = DataOptions(table=TableOptions(**table))
    return load_splits(DATASETS.get(name)(options))


def run(tmp_path: Path, clip: Path, *flags: str, name: str = "run") -> tuple[int, Path]:
    out = tmp_path / name
    argv = [
        *flags,
        "--clip_model",
        str(clip),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(out),
        "--device",
        "cpu",
        "--num_workers",
        "0",
        "--batch_size",
        "16",
    ]
    return run_lemon.main(argv), out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- every row accounted for
def test_every_row_is_scored_or_listed_in_dropped_csv(tmp_path, tiny_clip):
    names = images(tmp_path / "pics", 44)
    rows = [{"image": f"pics/{n}", "caption": f"a photo number {i}"} for i, n in enumerate(names)]
    rows[3]["caption"] = ""  # empty caption
    rows[7]["caption"] = "   "  # blank caption
    rows[11]["image"] = None  # no image
    rows[15]["image"] = "pics/missing.jpg"  # a file that is not there
    rows.append(dict(rows[20]))  # row 44 repeats row 20: same image, same caption
    rows.append({"image": f"pics/{names[20]}", "caption": "another caption"})  # row 45: kept
    rows.append({"image": str(tmp_path / "pics" / names[21]), "caption": "an absolute path"})
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)

    code, out = run(
        tmp_path, tiny_clip, "--dataset", "csv", "--data_path", str(tmp_path / "pairs.csv"),
        "--real_dataset", "--knn_k", "3",
    )  # fmt: skip
    assert code == 0
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    dropped = pd.read_csv(out / "dropped.csv", keep_default_na=False)
    expected = {3: "empty text", 7: "empty text", 11: "no image", 15: "missing image"}
    expected[44] = "duplicate"
    assert dict(zip(dropped["row"], dropped["reason"])) == expected
    assert set(dropped["split"]) == {"before splitting"}
    assert list(dropped.loc[dropped["row"] == 15, "image"]) == ["pics/missing.jpg"]
    # every row of the table exactly once: scored or dropped
    assert sorted([*scores["row"], *dropped["row"]]) == list(range(len(rows)))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["before_splitting/dropped"] == 5
    assert metrics["before_splitting/dropped_empty_text"] == 2
    assert metrics["before_splitting/dropped_duplicate"] == 1
    assert sum(metrics[f"{s}/n"] for s in ("train", "val", "test")) == len(rows) - 5
    args = json.loads((out / "args.json").read_text())
    assert args["data"]["dropped"]["before splitting"] == {
        "empty text": 2,
        "no image": 1,
        "missing image": 1,
        "duplicate": 1,
    }


def test_scores_join_back_to_the_table_in_one_merge(tmp_path, tiny_clip):
    names = images(tmp_path / "pics", 30)
    table = pd.DataFrame(
        {
            # absolute paths (a leading '/'), relative paths and a sub-folder, as users mix them
            "image": [
                str(tmp_path / "pics" / n) if i % 3 == 0 else f"pics/{n}"
                for i, n in enumerate(names)
            ],
            "caption": [f"caption {i}" for i in range(30)],
            "note": [f"my note {i}" for i in range(30)],
        }
    ).sample(frac=1, random_state=3)  # rows in no particular order
    table.to_csv(tmp_path / "pairs.csv", index=False)
    code, out = run(
        tmp_path, tiny_clip, "--dataset", "csv", "--data_path", str(tmp_path / "pairs.csv"),
        "--real_dataset", "--knn_k", "3",
    )  # fmt: skip
    assert code == 0
    scores = pd.read_csv(out / "scores.csv")
    user = pd.read_csv(tmp_path / "pairs.csv")
    joined = user.rename_axis("row").reset_index().merge(scores, on="row", suffixes=("", "_lemon"))
    assert len(joined) == len(user)
    assert (joined["image"] == joined["image_lemon"]).all()  # the image exactly as given
    assert (joined["caption"] == joined["text"]).all()
    assert joined["image"].str.startswith("/").sum() == 10
    for _, part in scores.groupby("split"):  # idx: the position within its split
        assert sorted(part["idx"]) == list(range(len(part)))


# ----------------------------------------------------------------------------- too small for three splits
@pytest.mark.parametrize("n", [1, 5])
def test_a_table_too_small_for_three_splits_is_one_line(tmp_path, capsys, tiny_clip, n):
    names = images(tmp_path, n)
    pd.DataFrame({"image": names, "caption": [f"c{i}" for i in range(n)]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    expected = (
        f"Dataset 'csv': {n} distinct images are too few for train/val/test splits (80/10/10 "
        f"needs at least {MIN_SPLIT_ITEMS})"
    )
    assert data_cli(["check", "csv", "--data_path", str(tmp_path / "t.csv")]) == 1
    assert expected in one_line_error(capsys)
    code, _ = run(
        tmp_path, tiny_clip, "--dataset", "csv", "--data_path", str(tmp_path / "t.csv"),
        "--real_dataset",
    )  # fmt: skip
    assert code == 2
    assert expected in one_line_error(capsys)


def test_a_folder_too_small_for_three_splits_is_one_line(tmp_path, capsys):
    images(tmp_path / "tree" / "cat", 3)
    images(tmp_path / "tree" / "dog", 2, seed=1)
    assert data_cli(["check", "folder", "--data_path", str(tmp_path / "tree")]) == 1
    assert "5 distinct images are too few" in one_line_error(capsys)
    images(tmp_path / "tree" / "dog", 3, seed=1)  # 6 images: the minimum splits 4 / 1 / 1
    assert data_cli(["check", "folder", "--data_path", str(tmp_path / "tree")]) == 0
    assert "train=4 val=1 test=1" in capsys.readouterr().out


# ----------------------------------------------------------------------------- relative folder paths
def test_folder_with_a_relative_data_path_reads_its_images(tmp_path, monkeypatch, caplog):
    for cls in ("cat", "dog"):
        images(tmp_path / "my_images" / cls, 6, seed=len(cls) + ord(cls[0]))
    write_image(tmp_path / "my_images" / "dog" / "zz_broken.jpg", None, corrupt=True)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        splits = load("folder", path="my_images")
    assert sum(len(p) for p in splits.splits.values()) == 12
    # the warning names the one bad file by the path it was read at (no prefix added twice)
    bad = [r.getMessage() for r in caplog.records if "not scoring" in r.getMessage()]
    assert len(bad) == 1 and "(first: 'my_images/dog/zz_broken.jpg')" in bad[0]
    assert splits.dropped.count("unreadable image") == 1
    # the trainer reads the same loader
    split, texts = load_training_pairs(
        TrainConfig(
            output_dir="x",
            dataset="folder",
            data=DataOptions.from_flags({"data_path": "my_images"}),
        )
    )
    assert len(split) == len(splits["train"]) and texts[0].startswith("A photo of a ")


# ----------------------------------------------------------------------------- class names
def _labelled_table(tmp_path: Path, labels: list) -> Path:
    names = images(tmp_path / "pics", len(labels))
    path = tmp_path / "t.csv"
    pd.DataFrame({"image": [f"pics/{n}" for n in names], "label": labels}).to_csv(path, index=False)
    return path


def test_class_names_file_turns_integer_labels_into_words(tmp_path, tiny_clip, caplog):
    path = _labelled_table(tmp_path, [i % 3 for i in range(30)])
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\n\n")
    with caplog.at_level(logging.WARNING):
        plain = load("csv", path=str(path), text_column="")
    assert plain["train"].class_names == ["0", "1", "2"]
    assert any("the labels are numbers" in r.getMessage() and "'A photo of a 0'" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        named = load("csv", path=str(path), text_column="", class_names=str(tmp_path / "names.txt"))
    assert named["train"].class_names == ["cat", "dog", "bird"]
    assert not [r for r in caplog.records if "numbers" in r.getMessage()]
    table = pd.read_csv(path)
    expected = {f"pics/{n}": "A photo of a " + ["cat", "dog", "bird"][lab]
                for n, lab in zip(table["image"].str[5:], table["label"])}  # fmt: skip
    code, out = run(
        tmp_path, tiny_clip, "--dataset", "csv", "--data_path", str(path), "--text_column", "",
        "--class_names", str(tmp_path / "names.txt"), "--real_dataset", "--knn_k", "3",
    )  # fmt: skip
    assert code == 0
    scores = pd.read_csv(out / "scores.csv")
    assert (scores["text"] == scores["image"].map(expected)).all()
    assert json.loads((out / "args.json").read_text())["class_names"] == str(tmp_path / "names.txt")


def test_class_names_for_folder_names_follow_their_sorted_order(tmp_path):
    for cls in ("n02", "n01"):
        images(tmp_path / "tree" / cls, 5, seed=int(cls[1:]))
    (tmp_path / "names.txt").write_text("goldfish\nshark\n")
    splits = load("folder", path=str(tmp_path / "tree"), class_names=str(tmp_path / "names.txt"))
    train = splits["train"]
    folder_of = [Path(p).parent.name for p in train.given_images()]
    assert [train.class_names[i] for i in train.observed] == [
        {"n01": "goldfish", "n02": "shark"}[f] for f in folder_of
    ]


@pytest.mark.parametrize(
    "labels, names, message",
    [
        ([0, 1, 2, 5] * 3, "a\nb\nc\n", r"label 5 has no line in --class_names .* \(3 names"),
        (["x", "y", "z"] * 4, "a\nb\n", r"has 2 names but the data has 3 classes \(x, y, z\)"),
        ([0, 1] * 6, "a\n\nb\n", r"line 2 is empty"),
        ([0, 1] * 6, "a\na\n", r"'a' is on lines 1 and 2"),
    ],
)
def test_a_class_names_file_that_does_not_fit_is_one_line(tmp_path, labels, names, message):
    path = _labelled_table(tmp_path, labels)
    (tmp_path / "names.txt").write_text(names)
    with pytest.raises(LemonError, match=message):
        load("csv", path=str(path), text_column="", class_names=str(tmp_path / "names.txt"))


# ----------------------------------------------------------------------------- without labels: LEMoN_FIX
def test_real_dataset_defaults_to_lemon_fix_settings(tmp_path):
    assert resolve_k(RunConfig(output_dir="x", dataset="csv", real_dataset=True)) == 30
    assert resolve_k(RunConfig(output_dir="x", dataset="csv")) == 5
    assert resolve_k(RunConfig(output_dir="x", dataset="csv", real_dataset=True, knn_k=7)) == 7
    code = run_lemon.main(
        ["--dataset", "synthetic", "--n_synthetic", "400", "--real_dataset",
         "--output_dir", str(tmp_path / "r"), "--beta", "2"]
    )  # fmt: skip
    assert code == 0
    hparams = json.loads((tmp_path / "r" / "hparams.json").read_text())
    assert hparams["knn_k"] == 30 and hparams["selection"] == "lemon_fix"
    fix = {"gamma": 5.0, "tau_1_n": 0.1, "tau_2_n": 5.0, "tau_1_m": 0.1, "tau_2_m": 5.0}
    assert {k: hparams[k] for k in fix} == fix and hparams["beta"] == 2.0  # given ones win


# ----------------------------------------------------------------------------- offline, no --clip_model
def test_offline_without_clip_model_fails_before_reading_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty cache
    argv = ["--dataset", "csv", "--data_path", str(tmp_path / "no_such.csv"), "--real_dataset",
            "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out")]  # fmt: skip
    assert run_lemon.main(argv) == 2
    err = one_line_error(capsys)
    # the model is checked first: the missing table is never reached
    assert "openai/clip-vit-base-patch32" in err and "no_such.csv" not in err
    assert "pass --clip_model /path/to/that/folder" in err
    assert "--clip_model demo_clip" in err and "train_clip_from_scratch.py" in err
    # embeddings of that model already in the cache: the run goes on (and fails on the table instead)
    from lemon.embed import build_embedder

    folder = tmp_path / "cache" / "embeddings" / build_embedder("huggingface_clip").id
    folder.mkdir(parents=True)
    np.save(folder / "entry.npy", np.zeros((1, 2), dtype=np.float32))
    assert run_lemon.main(argv) == 2
    assert "no_such.csv" in one_line_error(capsys)


def test_folder_keeps_the_image_as_given_and_drops_copies(tmp_path):
    names = images(tmp_path / "tree" / "cat", 4) + images(tmp_path / "tree" / "dog", 4, seed=9)
    shutil.copy(tmp_path / "tree" / "cat" / names[0], tmp_path / "tree" / "cat" / "copy.jpg")
    splits = load("folder", path=str(tmp_path / "tree"))
    given = sorted(g for p in splits.splits.values() for g in p.given_images())
    assert given == sorted([f"cat/{n}" for n in names[:4]] + [f"dog/{n}" for n in names[4:]])
    # the copy repeats an image of its own class: dropped as a duplicate, named as given
    assert list(splits.dropped.images) == ["cat/copy.jpg"]
    assert list(splits.dropped.reasons) == ["duplicate"]
