"""Training a CLIP on your own data: the printed command, progress in logs, masking identical captions,
splits by image identity, the pairs a model has seen, and out-of-fold scoring with ``--folds``.

The data are hand-made image folders and tables under tmp_path; the models are ``lemon-tiny`` trained for
one epoch (what they learn does not matter here: which model embeds which row does).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fake_data import write_image
from open_clip import ClipLoss

import run_lemon
import train_clip_from_scratch
from lemon.data import DATASETS
from lemon.data.base import DataOptions, TableOptions
from lemon.data.loading import load_splits
from lemon.embed import build_embedder
from lemon.train import loop
from lemon.train.info import parse_ids
from lemon.train.loop import contrastive_loss

TINY = ["--model", "lemon-tiny", "--epochs", "1", "--batch_size", "16", "--num_workers", "0"]
CLASSES = ("cat", "dog")


def image_tree(root: Path, per_class: int = 20) -> Path:
    """root/tree/<class>/<i>.jpg, distinct images."""
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        for i in range(per_class):
            write_image(root / "tree" / cls / f"{i:03d}.jpg", rng)
    return root / "tree"


def table_of(tree: Path, path: Path, order_seed: int | None = None) -> Path:
    """A classification table over the tree's images (paths relative to the table's folder)."""
    files = sorted(tree.rglob("*.jpg"))
    df = pd.DataFrame(
        {
            "file": [f.relative_to(path.parent).as_posix() for f in files],
            "label": [f.parent.name for f in files],
        }
    )
    if order_seed is not None:
        df = df.sample(frac=1, random_state=order_seed)
    df.to_csv(path, index=False)
    return path


def load(name: str, **table) -> object:
    return load_splits(DATASETS.get(name)(DataOptions(table=TableOptions(**table))))


def lemon(tmp_path: Path, *flags: str, name: str = "run") -> tuple[int, Path]:
    out = tmp_path / name
    argv = [*flags, "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out),
            "--device", "cpu", "--num_workers", "0", "--knn_k", "3"]  # fmt: skip
    return run_lemon.main(argv), out


def use_it(capsys) -> list[str]:
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("use it: "))
    return shlex.split(line[len("use it: ") :])


# ----------------------------------------------------------------------------- splits by image identity
def test_csv_and_folder_routes_split_the_same_images_alike(tmp_path):
    tree = image_tree(tmp_path)
    by_folder = load("folder", path=str(tree))
    tables = [table_of(tree, tmp_path / f"t{i}.csv", order_seed=i) for i in range(2)]
    by_tables = [load("csv", path=str(t), image_column="file", text_column="") for t in tables]

    def members(splits, split):  # the image files of a split (absolute paths)
        return sorted(splits[split].images.ids)

    for split in ("train", "val", "test"):
        assert members(by_tables[0], split) == members(by_folder, split)
        assert members(by_tables[1], split) == members(by_folder, split)  # row order: no matter
    other_seed = load_splits(
        DATASETS.get("folder")(DataOptions(data_seed=1, table=TableOptions(path=str(tree))))
    )
    assert members(other_seed, "test") != members(by_folder, "test")


def test_rows_of_one_image_stay_in_one_split(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(12):
        write_image(tmp_path / "pics" / f"{i}.jpg", rng)
    rows = [
        {"image": f"pics/{i}.jpg", "caption": f"caption {i} {j}"} for i in range(12) for j in (0, 1)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    splits = load("csv", path=str(tmp_path / "t.csv"))
    placed = Counter((i, s) for s, p in splits.splits.items() for i in p.images.ids)
    assert len(placed) == 12 and set(placed.values()) == {2}  # both rows of each image together
    assert [len(p) for p in splits.splits.values()] == [2 * 9, 2 * 1, 2 * 2]  # 12 images: 9 / 1 / 2


# ----------------------------------------------------------------------------- the printed command
@pytest.mark.parametrize("noisy", [False, True])
def test_the_printed_use_it_command_works_when_pasted(tmp_path, monkeypatch, capsys, noisy):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEMON_CACHE_DIR", str(tmp_path / "cache"))
    tree = image_tree(tmp_path)
    files = sorted(tree.rglob("*.jpg"))
    pd.DataFrame(
        {"pic": [f.relative_to(tmp_path).as_posix() for f in files],
         "y": [CLASSES.index(f.parent.name) for f in files]}
    ).to_csv("mine.csv", index=False)  # fmt: skip
    Path("names.txt").write_text("cat\ndog\n")
    data = ["--dataset", "csv", "--data_path", "mine.csv", "--image_column", "pic",
            "--text_column", "", "--label_column", "y", "--class_names", "names.txt"]  # fmt: skip
    noise = (
        ["--noise_type", "symmetric", "--noise_level", "0.4", "--data_seed", "3"] if noisy else []
    )
    assert train_clip_from_scratch.main([*data, *noise, *TINY, "--output_dir", "runs/clip"]) == 0
    command = use_it(capsys)
    assert command[:3] == ["python", "-m", "run_lemon"]
    assert ("--real_dataset" in command) != noisy
    assert run_lemon.main(command[3:]) == 0  # pasted as printed, from the same folder
    out = Path(command[command.index("--output_dir") + 1])
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == len(files) and (out / "done").is_file()
    assert set(scores["text"]) == {"A photo of a cat", "A photo of a dog"}
    info = json.loads((Path("runs/clip") / "train_info.json").read_text())
    trained = scores[scores["split"] == "train"]
    assert info["n_pairs"] == len(trained)
    if noisy:  # it scores the noisy labels the model was trained on
        assert scores["is_mislabel"].sum() > 0
        trained_on = torch.load(Path("runs/clip") / "train_state.pt", weights_only=False)
        assert trained_on["settings"]["noise_level"] == 0.4


# ----------------------------------------------------------------------------- progress without a terminal
def test_progress_is_one_line_per_epoch_in_logs(tmp_path, caplog, capsys, monkeypatch):
    tree = image_tree(tmp_path, per_class=8)
    table = table_of(tree, tmp_path / "t.csv")
    argv = ["--dataset", "csv", "--data_path", str(table), "--image_column", "file",
            "--text_column", "", *TINY, "--epochs", "2", "--output_dir", str(tmp_path / "m")]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="lemon.train.loop"):
        assert train_clip_from_scratch.main(argv) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "lemon.train.loop"]
    assert len(lines) == 2
    for epoch, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"epoch {epoch}/2: loss \d+\.\d{{4}}, \d+ pairs/s, [\d.]+ s", line)
    # within a long epoch too, when stdout is not a terminal (here: every batch)
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 0.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lemon.train.loop"):
        train_clip_from_scratch.main([*argv[:-1], str(tmp_path / "m2")])
    batches = [r.getMessage() for r in caplog.records if "batch" in r.getMessage()]
    assert batches[0].startswith("epoch 1/2: batch 1/") and "pairs/s" in batches[0]


# ----------------------------------------------------------------------------- masking identical captions
def test_identical_captions_are_not_negatives_in_the_loss():
    rng = np.random.default_rng(0)
    img, txt = (rng.normal(size=(4, 8)) for _ in range(2))
    img, txt = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (img, txt))
    scale, ids = 3.0, np.array([0, 0, 1, 0])  # rows 0, 1, 3 share a caption
    logits = scale * img @ txt.T
    same = (ids[:, None] == ids[None, :]) & ~np.eye(4, dtype=bool)

    def ce(z):  # mean over rows of -log softmax at the diagonal, masked entries left out
        z = np.where(same, -np.inf, z)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - np.diag(z))

    expected = (ce(logits) + ce(logits.T)) / 2
    t = [torch.as_tensor(x) for x in (img, txt)]
    got = contrastive_loss(*t, torch.tensor(scale, dtype=torch.float64), torch.as_tensor(ids))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    # with every caption distinct it is CLIP's own loss
    plain = contrastive_loss(*t, torch.tensor(scale, dtype=torch.float64), torch.arange(4))
    assert float(plain) == pytest.approx(float(ClipLoss()(*t, scale)), rel=1e-12)
    assert float(got) < float(plain)  # the same-caption pairs no longer count against the match


# ----------------------------------------------------------------------------- folds and seen pairs
@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    """A --folds 3 training on a classification table over an image tree (the csv route)."""
    root = tmp_path_factory.mktemp("folds")
    tree = image_tree(root)
    table = table_of(tree, root / "t.csv")
    argv = ["--dataset", "csv", "--data_path", str(table), "--image_column", "file",
            "--text_column", "", *TINY, "--folds", "3", "--output_dir", str(root / "clip")]  # fmt: skip
    assert train_clip_from_scratch.main(argv) == 0
    return root, table, root / "clip"


def test_folds_hold_out_each_training_image_once(folds):
    _, table, clip = folds
    info = json.loads((clip / "train_info.json").read_text())
    held = [set(parse_ids(h)) for h in info["held_out"]]
    train = load("csv", path=str(table), image_column="file", text_column="")["train"]
    everything = set(train.identities())
    assert info["folds"] == 3 and set().union(*held) == everything
    assert sum(map(len, held)) == len(everything) and max(map(len, held)) - min(map(len, held)) <= 1
    for f in range(3):
        fold_info = json.loads((clip / f"fold_{f}" / "train_info.json").read_text())
        assert set(parse_ids(fold_info["train_identities"])) == everything - held[f]


@pytest.mark.slow
def test_run_embeds_every_row_with_the_model_that_never_saw_it(folds, tmp_path, capsys):
    _, table, clip = folds
    flags = ["--dataset", "csv", "--data_path", str(table), "--image_column", "file",
             "--text_column", "", "--real_dataset", "--clip_model", str(clip)]  # fmt: skip
    code, out = lemon(tmp_path, *flags)
    assert code == 0
    scores = pd.read_csv(out / "scores.csv")
    info = json.loads((clip / "train_info.json").read_text())
    held = [set(parse_ids(h)) for h in info["held_out"]]
    splits = load("csv", path=str(table), image_column="file", text_column="")
    models = [build_embedder(str(clip / f"fold_{f}")) for f in range(3)]
    npz = np.load(out / "neighbours.npz")
    for split, part in scores.groupby("split"):
        pairs = splits[split]
        pil = [pairs.images[i] for i in part["idx"]]
        ids = pairs.identities()[part["idx"]]
        d_mm = []  # each row's d_mm under every fold model, computed here
        for m in models:
            a, b = m.encode_images(pil), m.encode_texts(list(part["text"]))
            a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
            d_mm.append(1 - np.sum(a * b, axis=1))
        d_mm = np.stack(d_mm, axis=1)
        if split == "train":  # the fold that held the image out, and only that one
            fold = np.array([next(f for f in range(3) if i in held[f]) for i in ids])
            np.testing.assert_allclose(part["d_mm"], d_mm[np.arange(len(part)), fold], atol=1e-5)
            # its image neighbours are those of the reference set as that model embeds it
            ref = splits["train"]
            ref_img = [m.encode_images([ref.images[i] for i in range(len(ref))]) for m in models]
            for row in np.argsort(part["idx"].to_numpy())[:5]:
                r = int(part["idx"].iloc[row])
                emb = ref_img[fold[row]] / np.linalg.norm(ref_img[fold[row]], axis=1, keepdims=True)
                sim = emb @ emb[r]
                sim[r] = -np.inf  # never its own neighbour
                assert set(npz["train_idx_n"][r]) == set(np.argsort(-sim)[:3])
        else:  # never trained on: one of the fold models embedded it
            assert (np.abs(d_mm - part["d_mm"].to_numpy()[:, None]) < 1e-5).any(axis=1).all()
    args = json.loads((out / "args.json").read_text())
    assert (
        args["data"]["seen_by_model"] == {}
    )  # no warning: no row was scored by a model that saw it
    cache = {p.name.split("-")[1] for p in (tmp_path / "cache" / "embeddings").iterdir()}
    assert cache == {"fold_0", "fold_1", "fold_2"}  # the cache keys by fold model
    code, again = lemon(tmp_path, *flags, name="again")
    assert code == 0 and json.loads((again / "args.json").read_text())["data"]["cache_misses"] == 0
    again_scores = pd.read_csv(again / "scores.csv")
    np.testing.assert_array_equal(again_scores["score"], scores["score"])


def test_a_run_warns_about_pairs_its_model_was_trained_on(folds, tmp_path, caplog):
    """A model trained through the csv route, scoring the same images through the folder route: only the
    train split holds images it saw (the routes split alike), and the run says how many."""
    root, _, clip = folds
    single = clip / "fold_0"
    held = set(parse_ids(json.loads((clip / "train_info.json").read_text())["held_out"][0]))
    with caplog.at_level(logging.WARNING):
        code, out = lemon(tmp_path, "--dataset", "folder", "--data_path", str(root / "tree"),
                          "--real_dataset", "--clip_model", str(single))  # fmt: skip
    assert code == 0
    n_train = json.loads((out / "metrics.json").read_text())["train/n"]
    seen = json.loads((out / "args.json").read_text())["data"]["seen_by_model"]
    assert seen == {"train": n_train - len(held), "val": 0, "test": 0}
    warning = [r.getMessage() for r in caplog.records if "was trained on" in r.getMessage()]
    assert len(warning) == 1 and f"{n_train - len(held)} of 40 pairs" in warning[0]
    assert "--folds K" in warning[0]


def test_fold_models_refuse_what_they_cannot_do(folds, tmp_path, capsys):
    _, table, clip = folds
    flags = ["--dataset", "csv", "--data_path", str(table), "--image_column", "file",
             "--text_column", "", "--real_dataset", "--clip_model", str(clip)]  # fmt: skip
    assert lemon(tmp_path, *flags, "--scorer", "dis_x")[0] == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Scorer 'dis_x' cannot score with fold models" in err
    broken = tmp_path / "broken"
    shutil.copytree(clip, broken)
    (broken / "fold_1" / "open_clip_model.safetensors").unlink()
    assert lemon(tmp_path, *flags[:-1], str(broken), name="b")[0] == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unfinished --folds 3 training (fold_1 missing)" in err


# ------------------------------------------------------------------------------ the docs' own-data commands
def test_the_own_data_commands_of_the_docs_are_valid():
    """Every run_lemon / trainer command in docs/data.md and docs/training.md parses and names real things
    (README.md's commands are run by tests/test_readme.py)."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "data.md").read_text() + (docs / "training.md").read_text()
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.DOTALL)
    commands = [
        c.split("#")[0].strip() for b in blocks for c in b.replace("\\\n", " ").splitlines()
    ]
    checked = 0
    for command in commands:
        words = shlex.split(command)
        if words[:3] == ["python", "-m", "run_lemon"]:
            run_lemon.check(words[3:])
            checked += 1
        elif words[:2] == ["python", "train_clip_from_scratch.py"]:
            train_clip_from_scratch.check(words[2:])
            checked += 1
    assert checked == 5
