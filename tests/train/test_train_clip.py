"""CLIP from scratch: seeded, resumable, LEMoN-filtered, and loadable by the embedder registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

import train_clip_from_scratch
from lemon.core.errors import LemonError, UnknownNameError
from lemon.embed import build_embedder
from lemon.train import (
    TrainConfig,
    keep_cleanest,
    load_training_pairs,
    model_config,
    train_clip,
)

N_KEEP = 120  # train on a filtered 120-pair subset of the demo: fast, and exercises the filter


@pytest.fixture(scope="module")
def scores_csv(tmp_path_factory):
    """A scores.csv in run_lemon's layout for the demo's noisy train split (score = row id, reversed)."""
    cfg = TrainConfig(output_dir="unused", noise_type="random", noise_level=0.4)
    split, texts = load_training_pairs(cfg)
    n = len(split)
    df = pd.DataFrame(
        {
            "split": "train",
            "idx": np.arange(n),
            "image": list(split.images.ids),
            "text": texts,
            "is_mislabel": split.is_mislabel.astype(int),
            "score": np.arange(n)[::-1] / n,
        }
    )
    path = tmp_path_factory.mktemp("run") / "scores.csv"
    df.to_csv(path, index=False)
    return str(path)


def _cfg(out, scores_csv, **kw) -> TrainConfig:
    base = dict(
        output_dir=str(out),
        noise_type="random",
        noise_level=0.4,
        filter_scores=scores_csv,
        keep_top_n=N_KEEP,
        model="lemon-tiny",
        epochs=1,
        batch_size=40,
        num_workers=0,
        warmup_steps=2,
    )
    return TrainConfig(**{**base, **kw})


def _weights(folder) -> dict[str, np.ndarray]:
    return load_file(str(folder / "open_clip_model.safetensors"))


def test_filter_keeps_the_lowest_scores(scores_csv):
    cfg = _cfg("unused", scores_csv)
    split, texts = load_training_pairs(cfg)
    assert len(split) == N_KEEP == len(texts)
    full, _ = load_training_pairs(
        TrainConfig(output_dir="unused", noise_type="random", noise_level=0.4)
    )
    # scores decrease with idx, so the kept rows are the last N_KEEP of the split, in order
    assert list(split.images.ids) == list(full.images.ids[-N_KEEP:])


def test_filter_rejects_a_mismatched_scores_file(scores_csv, tmp_path):
    full, texts = load_training_pairs(
        TrainConfig(output_dir="unused", noise_type="random", noise_level=0.4)
    )
    df = pd.read_csv(scores_csv)
    df.loc[0, "text"] = "something else"
    bad = tmp_path / "scores.csv"
    df.to_csv(bad, index=False)
    with pytest.raises(LemonError, match="does not match this train split"):
        keep_cleanest(full, str(bad), 10, texts)
    with pytest.raises(LemonError, match=r"--keep_top_n must be in \[1, 2000\], got 0"):
        keep_cleanest(full, scores_csv, 0, texts)
    with pytest.raises(LemonError, match="go together"):
        TrainConfig(output_dir="x", filter_scores=scores_csv).validate()


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownNameError, match=r"Unknown model 'lemon-huge'.*lemon-tiny.*ViT-B-32"):
        model_config("lemon-huge")


def test_train_is_seeded_and_loadable(tmp_path, scores_csv):
    a = train_clip(_cfg(tmp_path / "a", scores_csv))
    b = train_clip(_cfg(tmp_path / "b", scores_csv))
    c = train_clip(_cfg(tmp_path / "c", scores_csv, seed=1))
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)
    info = json.loads((a / "train_info.json").read_text())
    assert info["n_pairs"] == N_KEEP and len(info["loss_per_epoch"]) == 1
    emb = build_embedder(str(a))  # the registry loads what training wrote
    assert emb.encode_texts(["a red circle on the left"]).shape == (1, 16)


def test_resume_equals_uninterrupted(tmp_path, scores_csv, monkeypatch):
    import torch.utils.data

    straight = train_clip(_cfg(tmp_path / "straight", scores_csv, epochs=2))
    resumed = tmp_path / "resumed"
    loaders = []
    real_loader = torch.utils.data.DataLoader

    def interrupt_in_epoch_2(*args, **kwargs):  # the run is killed when its second epoch starts
        loaders.append(1)
        if len(loaders) == 2:
            raise KeyboardInterrupt
        return real_loader(*args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_clip(_cfg(resumed, scores_csv, epochs=2))
    assert (resumed / "train_state.pt").is_file() and not (
        resumed / "open_clip_model.safetensors"
    ).exists()
    monkeypatch.setattr(torch.utils.data, "DataLoader", real_loader)
    train_clip(_cfg(resumed, scores_csv, epochs=2))  # same command again: resumes at epoch 2
    ws, wr = _weights(straight), _weights(resumed)
    assert all(np.allclose(ws[k], wr[k], atol=1e-6) for k in ws)
    history = json.loads((resumed / "train_info.json").read_text())["loss_per_epoch"]
    assert history == pytest.approx(
        json.loads((straight / "train_info.json").read_text())["loss_per_epoch"]
    )
    with pytest.raises(LemonError, match="holds a training state with other settings \\(lr\\)"):
        train_clip(_cfg(resumed, scores_csv, epochs=3, lr=0.5))


def test_cli(tmp_path, scores_csv, capsys):
    out = tmp_path / "cli"
    argv = [
        "--output_dir",
        str(out),
        "--noise_type",
        "random",
        "--noise_level",
        "0.4",
        "--model",
        "lemon-tiny",
        "--epochs",
        "1",
        "--batch_size",
        "40",
        "--num_workers",
        "0",
        "--filter_scores",
        scores_csv,
        "--keep_top_n",
        str(N_KEEP),
        "--data_dir",
        str(tmp_path),
    ]
    assert train_clip_from_scratch.main(argv) == 0
    assert f"--clip_model {out}" in capsys.readouterr().out
    info = json.loads((out / "train_info.json").read_text())
    assert info["config"]["data"]["data_dir"] == str(tmp_path)
    assert train_clip_from_scratch.main([*argv[:-2], "--keep_top_n", "0"]) == 2
    assert "keep_top_n must be in" in capsys.readouterr().err
