"""The offline demo dataset and its from-scratch CLIP (``demo_clip``, trained on first use)."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

import run_lemon
from lemon.data import DATASETS
from lemon.data import demo as demo_data
from lemon.embed import build_embedder
from lemon.embed import checkpoint as ckpt_module
from lemon.noise import apply_noise


@pytest.fixture(scope="module")
def splits():
    return DATASETS.get("demo")().load(None, data_seed=0)


def test_registered_with_noise_and_embedder():
    cls = DATASETS.get("demo")
    assert (
        cls.task == "captioning"
        and cls.noise_types[0] == "random"
        and cls.default_embedder == "demo_clip"
    )


def test_sizes_and_determinism(splits):
    assert {s: len(p) for s, p in splits.splits.items()} == demo_data.SPLIT_SIZES
    again = demo_data.make_split("val", demo_data.SPLIT_SIZES["val"])
    np.testing.assert_array_equal(again.images.pixels, splits["val"].images.pixels)
    assert list(again.clean) == list(splits["val"].clean)
    all_ids = [i for split in splits.splits.values() for i in split.images.ids]
    assert len(set(all_ids)) == sum(demo_data.SPLIT_SIZES.values())  # ids unique across splits
    assert not np.array_equal(splits["train"].images.pixels[:300], splits["val"].images.pixels)


def test_captions_describe_the_pixels(splits):
    """Independent check of the rendering: the caption's colour sits on the caption's side of the image.

    Faint shapes are blended into the background (a style never described), so for them only the side is
    checked: the half holding the shape deviates more from the background."""
    split = splits["test"]
    styles = np.asarray(demo_data.STYLES)[demo_data.render_split("test", len(split))[1]["style"]]
    palette = {name: np.asarray(rgb, dtype=float) for name, rgb in demo_data.COLOURS.items()}
    for i in range(60):
        caption, pixels = split.clean[i], split.images.pixels[i].astype(float)
        colour = next(c for c in palette if re.search(rf"\b{c}\b", caption))
        side = "left" if re.search(r"\bleft\b", caption) else "right"
        shape = next(s for s in demo_data.SHAPES if re.search(rf"\b{s}\b", caption))
        assert sum(bool(re.search(rf"\b{s}\b", caption)) for s in demo_data.SHAPES) == 1
        if styles[i] == "faint":
            deviation = np.linalg.norm(pixels - np.median(pixels.reshape(-1, 3), axis=0), axis=-1)
            assert (deviation[:, :16].mean() > deviation[:, 16:].mean()) == (side == "left"), (
                caption
            )
            continue
        close = np.linalg.norm(pixels - palette[colour], axis=-1) < 60
        assert close.sum() >= 8, (caption, shape, styles[i])
        centre_x = np.nonzero(close)[1].mean()
        assert (centre_x < 16) == (side == "left"), caption


def test_random_noise_applies(splits):
    noisy = apply_noise(splits, "random", 0.4, data_seed=0)
    assert all(int(p.is_mislabel.sum()) <= int(0.4 * len(p)) for p in noisy.splits.values())
    assert (
        int(noisy["val"].is_mislabel.sum()) >= 0.4 * 300 - 5
    )  # swaps onto an identical caption are rare
    cat = apply_noise(splits, "cat", 0.2, data_seed=0)
    assert cat["train"].is_mislabel.sum() > 0


def test_demo_clip_is_trained_once_and_cached(tmp_path, monkeypatch):
    trained = []
    original = ckpt_module.train_named

    def tiny(
        entry, root, device
    ):  # the demo recipe, shrunk to a tiny model and one epoch for the test
        trained.append(entry.name)
        small = dataclasses.replace(
            entry, train={**entry.train, "model": "lemon-tiny", "epochs": 1}
        )
        return original(small, root, device)

    monkeypatch.setattr(ckpt_module, "train_named", tiny)
    first = build_embedder("demo_clip", cache_root=tmp_path)
    folder = tmp_path / "models" / "demo_clip"
    assert trained == ["demo_clip"] and (folder / "open_clip_config.json").is_file()
    info = json.loads((folder / "train_info.json").read_text())
    assert (
        info["config"]["noise_level"] == 0.4 and info["n_pairs"] == demo_data.SPLIT_SIZES["train"]
    )
    second = build_embedder("demo_clip", cache_root=tmp_path)
    assert trained == ["demo_clip"] and second.id == first.id and second.name == "demo_clip"


def test_run_lemon_on_demo_with_a_checkpoint(tmp_path, capsys):
    from tiny_clip import tiny_clip_checkpoint

    ckpt = tiny_clip_checkpoint(tmp_path, "open_clip")
    argv = [
        "--dataset",
        "demo",
        "--output_dir",
        str(tmp_path / "run"),
        "--clip_model",
        str(ckpt),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--skip_hparam_optim",
        "--skip_train",
        "--num_workers",
        "0",
    ]
    assert run_lemon.main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test/n"] == demo_data.SPLIT_SIZES["test"] and 0 <= metrics["test/AUROC"] <= 1
    assert "test" in capsys.readouterr().out
    assert (
        run_lemon.main([*argv[:3], str(tmp_path / "run2"), *argv[4:]]) == 0
    )  # second run: all cached
    assert len(list((tmp_path / "cache" / "embeddings").rglob("*.npy"))) == 6


@pytest.mark.slow
def test_demo_end_to_end_quality(tmp_path):
    """The README's first command: LEMoN finds the noise (test AUROC >= 0.9) and beats CLIP similarity."""
    common = ["--dataset", "demo", "--cache_dir", str(tmp_path / "cache")]
    assert run_lemon.main([*common, "--output_dir", str(tmp_path / "lemon")]) == 0
    assert (
        run_lemon.main(
            [*common, "--output_dir", str(tmp_path / "mm"), "--ablation", "multimodal_baseline"]
        )
        == 0
    )
    lemon = json.loads((tmp_path / "lemon" / "metrics.json").read_text())
    base = json.loads((tmp_path / "mm" / "metrics.json").read_text())
    assert lemon["test/AUROC"] >= 0.9
    assert lemon["test/AUROC"] >= base["test/AUROC"]


def test_a_damaged_demo_clip_is_trained_again(tmp_path, monkeypatch, caplog):
    """A cached demo_clip whose weights were cut short (a full disk, a killed copy) is detected and
    retrained, with a warning; it is never loaded half (a safetensors error)."""
    from tiny_clip import tiny_clip_checkpoint

    folder = tmp_path / "models" / "demo_clip"
    folder.parent.mkdir(parents=True)
    tiny_clip_checkpoint(tmp_path / "tmp", "open_clip").rename(folder)
    weights = folder / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    trained = []
    original = ckpt_module.train_named

    def tiny(
        entry, root, device
    ):  # the demo recipe, shrunk to a tiny model and one epoch for the test
        trained.append(entry.name)
        return original(
            dataclasses.replace(entry, train={**entry.train, "model": "lemon-tiny", "epochs": 1}),
            root,
            device,
        )

    monkeypatch.setattr(ckpt_module, "train_named", tiny)
    with caplog.at_level("WARNING"):
        embedder = build_embedder("demo_clip", cache_root=tmp_path)
    assert (
        trained == ["demo_clip"]
        and "is damaged" in caplog.text
        and "training it again" in caplog.text
    )
    assert ckpt_module.weights_problem(folder) is None
    assert embedder.encode_texts(["a red circle"]).shape[0] == 1


def test_a_model_trained_on_the_train_split_by_design_is_not_an_alarm(caplog):
    """demo_clip is trained on the demo's train split (the paper's from-scratch setting): the run says so
    in its log, not as a warning; any other model that saw the pairs it scores is a warning."""
    import logging
    from types import SimpleNamespace

    from lemon.embed.folds import seen_by_model

    ids = np.arange(1, 11, dtype=np.uint64)

    class Splits(dict):
        name = "demo"

    data = Splits({"train": SimpleNamespace(identities=lambda: ids)})
    trained = np.sort(ids)

    class Part(SimpleNamespace):
        def __len__(self):
            return len(self.ids)

    features = SimpleNamespace(splits={"train": Part(ids=np.arange(10))})
    with caplog.at_level(logging.INFO):
        assert seen_by_model(data, features, trained, "demo_clip") == {"train": 10}
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "by design" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        seen_by_model(data, features, trained, "my_clip")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


@pytest.mark.slow
def test_the_first_command_prints_no_alarm_and_the_true_rate(tmp_path):
    """Case 25 of issue 25: the README's first command prints at most the one note that it trains
    demo_clip (first use), no warning that its own model memorised its train split, and the true noise
    rate (40%) beside the estimate."""
    from reliability_helpers import finish, run_cli, start_cli

    argv = ["--dataset", "demo", "--cache_dir", str(tmp_path / "cache")]
    first = finish(  # trains demo_clip: minutes on a loaded 2-core machine
        start_cli("run_lemon", [*argv, "--output_dir", str(tmp_path / "a")], tmp_path / "l1"),
        tmp_path / "l1",
        timeout=1800,
    )
    assert first.rc == 0, first.err
    lines = [line for line in first.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "first use of 'demo_clip': training it from scratch" in lines[0]
    assert re.search(r"estimated noise rate .*: 4\d\.\d% .*; true rate 40\.0%", first.out)
    second = run_cli("run_lemon", [*argv, "--output_dir", str(tmp_path / "b")], tmp_path / "l2")
    assert second.rc == 0 and second.err.strip() == "", second.err
