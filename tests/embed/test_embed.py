"""Embedders: name parsing, tiny checkpoints loaded through the user code path, offline failures."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_clip import tiny_clip_checkpoint

from lemon.core.errors import LemonError, ModelNotFoundError, UnknownNameError
from lemon.embed import EMBEDDERS, build_embedder, parse_embedder_name
from lemon.embed.base import resolve_precision

LAYOUTS = ("open_clip", "transformers")


@pytest.fixture(scope="module", params=LAYOUTS)
def checkpoint(request, tmp_path_factory):
    return tiny_clip_checkpoint(tmp_path_factory.mktemp("ckpt"), request.param)


def _images(n: int, size: tuple[int, int] = (40, 56)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(n)]


def test_parse_names(tmp_path):
    assert parse_embedder_name("huggingface_clip") == ("huggingface_clip", None)
    assert parse_embedder_name("hf_clip") == ("huggingface_clip", None)
    assert parse_embedder_name("open_clip:ViT-B-32/openai") == ("open_clip", "ViT-B-32/openai")
    assert parse_embedder_name("hf-hub:org/repo") == ("hf-hub", "org/repo")
    assert parse_embedder_name("local-dir:/x/y") == ("checkpoint", "/x/y")
    assert parse_embedder_name("huggingface_clip:/a/b") == ("huggingface_clip", "/a/b")
    assert parse_embedder_name(str(tmp_path)) == ("checkpoint", str(tmp_path))
    for name in (
        "biomed_clip",
        "mimic_clip_from_scratch_random",
        "mimic_clip_from_scratch_cat",
        "cc3m_clip_from_scratch",
        "chexzero",
        "demo_clip",
    ):  # the original's aliases + ours
        assert parse_embedder_name(name) == (name, None)


def test_unknown_name_lists_choices_and_forms():
    with pytest.raises(
        UnknownNameError,
        match=r"Unknown embedder 'hugingface_clip'.*huggingface_clip.*"
        r"open_clip:ARCH/PRETRAINED.*Did you mean 'huggingface_clip'",
    ):
        parse_embedder_name("hugingface_clip")


def test_open_clip_name_validation():
    with pytest.raises(
        UnknownNameError, match=r"Unknown open_clip architecture 'ViT-B-33'.*Did you mean"
    ):
        build_embedder("open_clip:ViT-B-33/openai")
    with pytest.raises(
        UnknownNameError,
        match=r"Unknown pretrained weights 'nope' for open_clip 'ViT-B-32'.*openai",
    ):
        build_embedder("open_clip:ViT-B-32/nope")


def test_precision_rules():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    with pytest.raises(LemonError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(LemonError, match="Unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")


def test_checkpoint_embedder_encodes(checkpoint):
    emb = build_embedder(str(checkpoint))
    assert not emb.loaded  # lazy: building reads no weights
    images, texts = _images(5), ["a red circle", "a blue square", "a red circle"]
    img, txt = emb.encode_images(images), emb.encode_texts(texts)
    assert img.shape == (5, emb.dim) and txt.shape == (3, emb.dim)
    assert img.dtype == np.float32 and np.isfinite(img).all()
    np.testing.assert_array_equal(txt[0], txt[2])
    assert not np.allclose(txt[0], txt[1])
    batch = torch.stack(
        [emb.preprocess(im) for im in images]
    )  # a preprocessed batch gives the same rows
    np.testing.assert_allclose(emb.encode_images(batch), img, rtol=1e-5, atol=1e-6)
    again = build_embedder(str(checkpoint))  # fresh load: deterministic
    np.testing.assert_array_equal(again.encode_texts(texts), txt)
    assert again.id == emb.id


def test_open_clip_checkpoint_matches_direct_model(tmp_path):
    import open_clip

    folder = tiny_clip_checkpoint(tmp_path, "open_clip")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(["a cat", "two dogs"])
    with torch.no_grad():
        expected = model.eval().encode_text(tokens).numpy()
        expected_img = model.encode_image(
            torch.stack([preprocess(im) for im in _images(2)])
        ).numpy()
    emb = build_embedder(f"local-dir:{folder}")
    np.testing.assert_allclose(
        emb.encode_texts(["a cat", "two dogs"]), expected, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(emb.encode_images(_images(2)), expected_img, rtol=1e-5, atol=1e-6)


def test_hf_checkpoint_matches_direct_model(tmp_path):
    from transformers import CLIPModel, CLIPTokenizer

    folder = tiny_clip_checkpoint(tmp_path, "transformers")
    model = CLIPModel.from_pretrained(folder).eval()
    tok = CLIPTokenizer.from_pretrained(folder)(
        ["a cat", "two dogs"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        out = model.get_text_features(**tok)
    expected = (out if isinstance(out, torch.Tensor) else out.pooler_output).numpy()
    np.testing.assert_allclose(
        build_embedder(f"huggingface_clip:{folder}").encode_texts(["a cat", "two dogs"]),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )


def test_placeholder_tokenizer_is_detected(tmp_path):
    """The offline failure: a 2-token vocabulary that maps every word to one id, without raising."""
    folder = tiny_clip_checkpoint(tmp_path, "transformers")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink(missing_ok=True)
    (folder / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(
        ModelNotFoundError,
        match=r"tokenizer .* has \d+ tokens but the model's vocabulary has "
        r"49408.*did not load",
    ):
        build_embedder(str(folder)).load()


def test_partially_loaded_weights_are_detected(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tiny_clip_checkpoint(tmp_path, "transformers")
    state = load_file(folder / "model.safetensors")
    state.pop(next(k for k in state if "visual_projection" in k))
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ModelNotFoundError, match=r"did not fully load: 1 tensors missing.*visual_projection"
    ):
        build_embedder(str(folder)).load()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(
        ModelNotFoundError,
        match=r"is not a model checkpoint: expected a folder with open_clip_config.json",
    ):
        build_embedder(str(tmp_path))


def test_named_checkpoint_missing_says_how_to_train(tmp_path):
    with pytest.raises(
        ModelNotFoundError,
        match=r"'mimic_clip_from_scratch_random' is a local checkpoint "
        r"expected in .*train_clip_from_scratch.py --dataset mimiccxr_caption",
    ):
        build_embedder("mimic_clip_from_scratch_random", cache_root=tmp_path)


@pytest.mark.parametrize(
    "name", ["huggingface_clip:lemon-tests/no-such-model", "hf-hub:lemon-tests/no-such-model"]
)
def test_offline_missing_model_fails_fast_in_one_line(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(
        ModelNotFoundError,
        match=r"needs the weights .*cannot be reached \(offline\).*"
        r"pass --clip_model /path/to/that/folder",
    ) as err:
        build_embedder(name).load()
    assert time.time() - start < 15
    assert "\n" not in str(err.value)


def test_every_registered_embedder_builds_lazily_or_says_why(tmp_path, monkeypatch):
    """Each registry entry either builds without touching weights or fails with a one-line LemonError."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_clip_checkpoint(tmp_path, "open_clip")
    args = {"open_clip": "ViT-B-32/random", "hf-hub": "org/repo", "checkpoint": str(folder)}
    for name in EMBEDDERS.names():
        if name == "demo_clip":
            continue  # trains on first use: covered by tests/data/test_demo.py
        try:
            emb = EMBEDDERS.build(
                name, arg=args.get(name), device="cpu", precision="auto", cache_root=tmp_path
            )
        except LemonError as err:
            message = str(err)
            assert "\n" not in message and ("train" in message or "checkpoint" in message), message
            continue
        assert not emb.loaded and emb.id and "/" not in emb.id
