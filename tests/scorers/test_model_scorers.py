"""Model-based scorers (blip_itm, blip_capfilt, llava, vdc) and training-based ones (aum, datamap).

The model-based scorers run end to end through lemon.run.pipeline.run on a small image table, with tiny randomly
initialised checkpoints saved in the real on-disk layout (tiny_hf_models). Their scores are checked
against the same model run here by hand on single pairs, and against their definitions; the cache, the
refusals and the one-line offline errors are checked too.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import tiny_hf_models as tiny
from PIL import Image

from lemon.core.errors import LemonError, ModelNotFoundError
from lemon.run.config import RunConfig
from lemon.run.pipeline import run
from lemon.scorers import SCORERS
from lemon.scorers.vdc import parse_questions, says_yes

IMAGE_SCORERS = [n for n in SCORERS.names() if SCORERS.get(n).needs_images]
COLOURS = ("red", "blue", "green", "white", "black")
SHAPES = ("circle", "square")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """40 small images with captions (captioning table) and colour labels (classification table), fixed
    splits 24 / 8 / 8, plus a tiny CLIP to embed them."""
    from tiny_clip import tiny_clip_checkpoint

    root = tmp_path_factory.mktemp("pairs")
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        colour, shape = COLOURS[i % 5], SHAPES[(i // 5) % 2]
        pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img" / f"{i}.png")
        split = "train" if i < 24 else ("val" if i < 32 else "test")
        rows.append(
            dict(
                image=f"img/{i}.png",
                caption=f"a {colour} {shape} on the left",
                label=colour,
                split=split,
            )
        )
    table = pd.DataFrame(rows)
    table.drop(columns="label").to_csv(root / "captions.csv", index=False)
    table.drop(columns="caption").to_csv(root / "labels.csv", index=False)
    return {
        "root": root,
        "clip": str(tiny_clip_checkpoint(root / "clip", "open_clip")),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "blip": str(tiny.tiny_blip_itm(folder / "blip_itm")),
        "captioner": str(tiny.tiny_blip_captioner(folder / "blip_captioner")),
        "llava": str(tiny.tiny_llava(folder / "llava_next")),
        "llava15": str(tiny.tiny_llava(folder / "llava_15", next_version=False)),
        "llm": str(tiny.tiny_llm(folder / "llm")),
        "instructblip": str(tiny.tiny_instructblip(folder / "instructblip")),
    }


def config(data, tmp_path, scorer: str, task: str = "captioning", **flags) -> RunConfig:
    table = "captions.csv" if task == "captioning" else "labels.csv"
    columns = {"label_column": ""} if task == "captioning" else {"text_column": ""}
    return RunConfig.from_flags(
        dict(
            output_dir=str(tmp_path / "run"),
            dataset="csv",
            data_path=str(data["root"] / table),
            noise_type="random" if task == "captioning" else "symmetric",
            noise_level=0.4,
            clip_model=data["clip"],
            cache_dir=str(tmp_path / "cache"),
            num_workers=0,
            knn_k=3,
            scorer=scorer,
            overwrite=True,
            **columns,
            **flags,
        )
    )


def scores_of(tmp_path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "run" / "scores.csv", keep_default_na=False)


def image(data, row: pd.Series) -> Image.Image:
    """The pair's image: scores.csv keeps the path as the table gives it (relative to the table)."""
    return Image.open(data["root"] / row["image"]).convert("RGB")


def blip_by_hand(folder: str, images: list, texts: list[str], itm: bool = True) -> np.ndarray:
    """p(match) (or the ITC cosine) of each pair, straight from transformers."""
    import torch
    from transformers import AutoProcessor, BlipForImageTextRetrieval

    model = BlipForImageTextRetrieval.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    out = []
    for im, text in zip(images, texts):
        enc = processor(images=im, text=text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc, use_itm_head=itm).itm_score
        out.append(float(torch.softmax(logits, -1)[0, 1] if itm else logits[0, 0]))
    return np.array(out)


# ---------------------------------------------------------------------------------------------- BLIP
@pytest.mark.parametrize("mode", ["itm", "itc"])
def test_blip_itm_is_one_minus_the_models_match_on_each_pair(data, models, tmp_path, mode):
    result = run(config(data, tmp_path, "blip_itm", blip_model=models["blip"], blip_mode=mode))
    frame = scores_of(tmp_path)
    assert len(frame) == 40 and result.metrics["test/n"] == 8
    column = "p_match" if mode == "itm" else "itc_cosine"
    np.testing.assert_allclose(frame["score"], 1 - frame[column], atol=1e-6)
    picked = frame.iloc[[0, 13, 30, 39]]  # every split, noisy and clean texts
    expected = blip_by_hand(
        models["blip"],
        [image(data, r) for _, r in picked.iterrows()],
        list(picked["text"]),
        mode == "itm",
    )
    np.testing.assert_allclose(picked[column], expected, atol=1e-5)
    hparams = json.loads((tmp_path / "run" / "hparams.json").read_text())
    assert (
        hparams["model"].startswith("local-blip_itm-")
        and f"mode={mode}" in hparams["model_settings"]
    )


def test_blip_capfilt_filter_is_the_originals_itm_filter(data, models, tmp_path):
    run(config(data, tmp_path, "blip_itm", blip_model=models["blip"]))
    itm = scores_of(tmp_path)
    run(config(data, tmp_path, "blip_capfilt", blip_model=models["blip"]))
    capfilt = scores_of(tmp_path)
    np.testing.assert_allclose(capfilt["score"], itm["score"], atol=1e-7)


def test_blip_capfilt_caption_gap_compares_the_captioners_caption(data, models, tmp_path):
    run(
        config(
            data,
            tmp_path,
            "blip_capfilt",
            blip_model=models["blip"],
            capfilt_mode="caption_gap",
            blip_captioner=models["captioner"],
        )
    )
    frame = scores_of(tmp_path)
    np.testing.assert_allclose(
        frame["score"], frame["p_match_caption"] - frame["p_match"], atol=1e-6
    )
    assert frame["score"].between(-1, 1).all() and frame["p_match_caption"].between(0, 1).all()


# ---------------------------------------------------------------------------------------------- LLaVA
@pytest.mark.parametrize("layout", ["llava", "llava15"])
def test_llava_scores_one_minus_p_yes_among_yes_and_no(data, models, tmp_path, layout):
    run(config(data, tmp_path, "llava", llava_model=models[layout], model_batch_size=5))
    frame = scores_of(tmp_path)
    p_yes, p_no = frame["p_yes"], frame["p_no"]
    assert (p_yes > 0).all() and (p_no > 0).all() and (p_yes + p_no <= 1 + 1e-6).all()
    np.testing.assert_allclose(frame["score"], 1 - p_yes / (p_yes + p_no), atol=1e-6)


def test_llava_original_answer_rule(data, models, tmp_path):
    run(config(data, tmp_path, "llava", llava_model=models["llava"], llava_answer="original"))
    frame = scores_of(tmp_path)
    assert frame["score"].between(0, 1).all()


def test_answer_tokens_are_the_single_token_spellings_of_yes_and_no():
    from lemon.scorers.hf import answer_token_ids

    tok = tiny.llama_tokenizer()
    yes, no = answer_token_ids(tok, "yes"), answer_token_ids(tok, "no")
    assert {tok.decode([i]).strip().lower() for i in yes} == {"yes"}
    assert {tok.decode([i]).strip().lower() for i in no} == {"no"}
    assert {"▁Yes", "Yes", "yes"} <= set(tok.convert_ids_to_tokens(yes)) and not set(yes) & set(no)
    with pytest.raises(ModelNotFoundError, match="no single token for 'maybe'"):
        answer_token_ids(tok, "maybe")


# ---------------------------------------------------------------------------------------------- VDC
@pytest.mark.parametrize("task", ["captioning", "classification"])
def test_vdc_scores_the_fraction_of_inconsistent_answers(data, models, tmp_path, task):
    flags = dict(
        vdc_llm=models["llm"],
        vdc_vqa=models["instructblip"],
        vdc_questions=2,
        vdc_question_tokens=12,
        vdc_answer_tokens=4,
    )
    run(config(data, tmp_path, "vdc", task=task, **flags))
    frame = scores_of(tmp_path)
    # two common questions plus one to two specific ones (or the fallback question) per pair
    assert frame["n_questions"].between(3, 4).all()
    np.testing.assert_allclose(
        frame["score"], 1 - frame["n_consistent"] / frame["n_questions"], atol=1e-6
    )
    hparams = json.loads((tmp_path / "run" / "hparams.json").read_text())
    assert f"task={task}" in hparams["model_settings"]


def test_vdc_with_a_llava_answering_and_the_generating_judge(data, models, tmp_path):
    flags = dict(
        vdc_llm=models["llm"],
        vdc_vqa=models["llava"],
        vdc_questions=0,
        vdc_judge="generate",
        vdc_answer_tokens=4,
    )
    run(config(data, tmp_path, "vdc", **flags))
    frame = scores_of(tmp_path)
    assert (frame["n_questions"] == 2).all() and frame["score"].isin([0, 0.5, 1]).all()


def test_question_parsing_and_yes_matching():
    reply = "Here are questions:\n1. Is there a dog?\n- Is the dog red?\n\n* Is it sitting?\nThanks"
    assert parse_questions(reply, 2) == ["Is there a dog?", "Is the dog red?"]
    assert parse_questions("look at the dog\nand the cat", 6) == ["look at the dog", "and the cat"]
    assert says_yes("Yes, it is.") and says_yes("I think yes")
    assert not says_yes("The eyes are blue") and not says_yes("no")


# ---------------------------------------------------------------------------------------------- shared
def test_model_outputs_are_cached_and_the_model_is_not_loaded_again(
    data, models, tmp_path, monkeypatch
):
    cfg = config(data, tmp_path, "blip_itm", blip_model=models["blip"])
    run(cfg)
    first = scores_of(tmp_path)

    def refuse(self):
        raise AssertionError("the model was loaded although its outputs are cached")

    monkeypatch.setattr(SCORERS.get("blip_itm"), "load", refuse)
    run(cfg)
    np.testing.assert_array_equal(scores_of(tmp_path)["score"], first["score"])
    entries = list((tmp_path / "cache" / "embeddings").glob("scorer-blip_itm-*/*.npy"))
    assert (
        len(entries) == 6
    )  # per split: its pairs, and the mismatched pairs of the label-free rule
    with pytest.raises(AssertionError, match="was loaded"):  # other settings: another entry
        run(config(data, tmp_path, "blip_itm", blip_model=models["blip"], blip_mode="itc"))


@pytest.mark.parametrize(
    "scorer, flags, flag",
    [
        ("blip_itm", {"blip_model": "lemon-tests/absent-blip"}, "--blip_model"),
        (
            "blip_capfilt",
            {"capfilt_mode": "caption_gap", "blip_captioner": "lemon-tests/absent-captioner"},
            "--blip_captioner",
        ),
        ("llava", {"llava_model": "lemon-tests/absent-llava"}, "--llava_model"),
        ("vdc", {"vdc_llm": "lemon-tests/absent-llm"}, "--vdc_llm"),
        ("vdc", {"vdc_vqa": "lemon-tests/absent-vqa"}, "--vdc_vqa"),
    ],
)
def test_missing_weights_offline_fail_in_one_line_naming_the_flag(
    data, models, tmp_path, monkeypatch, scorer, flags, flag
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    present = {
        "blip_model": models["blip"],
        "vdc_llm": models["llm"],
        "vdc_vqa": models["instructblip"],
    }
    reads = {f.name for f in dataclasses.fields(SCORERS.get(scorer).Options)}
    present = {name: path for name, path in present.items() if name in reads}
    cfg = config(data, tmp_path, scorer, **{**present, **flags})
    with pytest.raises(ModelNotFoundError) as info:
        run(cfg)
    message = str(info.value)
    assert "\n" not in message and "absent" in message
    assert f"pass {flag} /path/to/that/folder" in message and "local Hugging Face cache" in message


def test_a_folder_without_weights_or_a_missing_folder_is_named(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        ModelNotFoundError, match=r"cannot load its model from .*empty \(--blip_model\)"
    ):
        run(config(data, tmp_path, "blip_itm", blip_model=str(empty)))
    with pytest.raises(ModelNotFoundError, match=r"--llava_model /no/such/llava: no such folder"):
        run(config(data, tmp_path, "llava", llava_model="/no/such/llava"))


@pytest.mark.parametrize("name", IMAGE_SCORERS)
def test_embeddings_only_data_is_refused(name, tmp_path, small_npz):
    from lemon.data.embeddings import features_from_arrays
    from lemon.scorers.base import ScorerOptions

    cfg = RunConfig(output_dir=str(tmp_path / "run"), dataset="synthetic", scorer=name)
    with pytest.raises(
        LemonError,
        match=rf"Scorer '{name}' runs a model .* --dataset synthetic holds embeddings only",
    ):
        run(cfg)
    with np.load(small_npz) as arrays:
        features = features_from_arrays(dict(arrays))
    with pytest.raises(
        LemonError, match=r"carries embeddings only \(no images in train, val, test\)"
    ):
        SCORERS.get(name)(ScorerOptions()).check(features)


# ---------------------------------------------------------------------------------------------- AUM / Datamap
def test_training_statistics_without_learning_are_the_initial_heads():
    """lr = 0: every epoch sees the same head, so the variability is 0 and the margin is positive exactly
    where the head predicts the label."""
    from lemon.scorers.dynamics import training_dynamics

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 8)), rng.integers(0, 3, 60)
    stats = training_dynamics(x, y, 3, epochs=4, lr=0.0, batch_size=16, seed=1)
    np.testing.assert_allclose(stats["variability"], 0, atol=1e-7)
    assert set(np.unique(stats["correctness"])) <= {0.0, 1.0}
    np.testing.assert_array_equal(stats["aum"] > 0, stats["correctness"] == 1)
    assert np.all((stats["confidence"] > 0) & (stats["confidence"] < 1))


def test_aum_and_datamap_find_flipped_labels_on_separable_data():
    """Two well separated classes, every fifth label flipped: the flipped samples keep a negative margin
    (AUM) and a low confidence (Datamap) while the head learns the majority."""
    from lemon.scorers.dynamics import training_dynamics

    rng = np.random.default_rng(0)
    clean = np.repeat([0, 1], 50)
    x = np.where(clean[:, None] == 0, 1.0, -1.0) * np.ones((100, 4)) + 0.3 * rng.normal(
        size=(100, 4)
    )
    flipped = np.arange(100) % 5 == 0
    stats = training_dynamics(x, np.where(flipped, 1 - clean, clean), 2, 10, 0.5, 16, seed=0)
    assert stats["aum"][flipped].max() < 0 < stats["aum"][~flipped].min()
    assert stats["confidence"][flipped].max() < 0.5 < stats["confidence"][~flipped].min()


@pytest.mark.parametrize("name", ["aum", "datamap"])
def test_aum_and_datamap_through_the_pipeline(name, tmp_path):
    result = run(
        RunConfig(
            output_dir=str(tmp_path / "run"), dataset="synthetic", n_synthetic=400, scorer=name
        )
    )
    frame = pd.read_csv(tmp_path / "run" / "scores.csv")
    if name == "aum":
        np.testing.assert_allclose(frame["score"], -frame["aum"])
    else:
        np.testing.assert_allclose(frame["score"], 1 - frame["confidence"])
        flag = (frame["confidence"] < 0.5) & (frame["variability"] < 0.1)
        np.testing.assert_array_equal(frame["datamap_flag"], flag.astype(float))
    assert (
        result.metrics["test/AUROC"] > 0.8
    )  # the planted flips of --dataset synthetic are learnable
    hparams = result.hparams
    assert hparams["trained_on"] == ["train", "val", "test"] and hparams["dynamics_epochs"] == 20
    assert math.isfinite(hparams["fit_accuracy"])
    # no training dynamics for mismatched pairs: the label-free rule uses cleanlab's estimate
    assert hparams["label_free"]["method"] == "cleanlab_joint"
    assert 0 < result.metrics["estimated_noise_rate"] < 1


def test_aum_refuses_captioning_data(data, tmp_path):
    with pytest.raises(LemonError, match="Scorer 'aum' does not work on captioning data"):
        run(config(data, tmp_path, "aum").replace(dataset="demo", data_path=None))
