"""Python API (lemon/api/issues.py): find_label_issues (mask / ranked indices), get_label_quality_scores,
score_pairs (the DataFrame), raw images and texts through the embedding cache, and the input errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import lemon
from lemon.core.errors import LemonError
from lemon.data.synthetic import make_synthetic_embeddings

N = 800


@pytest.fixture(scope="module")
def data():
    return make_synthetic_embeddings(N)


@pytest.fixture(scope="module")
def fixed(data):
    """score_pairs without verified pairs (LEMoN_FIX, label-free flags), computed once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lemon.score_pairs(data["train_img"], data["train_txt"], data["train_noisy_label"])


def inputs(data, n=N):
    return data["train_img"][:n], data["train_txt"][:n], data["train_noisy_label"][:n]


def test_score_pairs_without_known_labels_flags_the_estimated_rate(data, fixed):
    df = fixed
    assert len(df) == N and df.attrs["selection"] == "lemon_fix"
    assert list(df.columns) == [
        "lemon_score",
        "label_quality",
        "d_mm",
        "s_n",
        "s_m",
        "given_label",
        "suggested_label",
        "suggestion_confidence",
        "is_label_issue",
    ]
    np.testing.assert_allclose(df.lemon_score, df.d_mm + 5 * df.s_n + 5 * df.s_m)
    truth = data["train_is_mislabel"].astype(bool)
    assert roc_auc_score(truth, df.lemon_score) > 0.9
    # without verified pairs the label-free rule flags round(estimated rate * n), the top scores
    assert df.attrs["threshold_rule"] == "label_free"
    rate = df.attrs["estimated_noise_rate"]
    assert abs(rate - truth.mean()) < 0.1
    flagged = df.is_label_issue.to_numpy()
    assert flagged.sum() == round(rate * N)
    assert df.lemon_score[flagged].min() > df.lemon_score[~flagged].max()


def test_find_label_issues_returns_a_mask_or_ranked_indices(data, fixed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = lemon.find_label_issues(*inputs(data))
        ranked = lemon.find_label_issues(*inputs(data), return_indices_ranked_by="lemon_score")
        by_quality = lemon.find_label_issues(
            *inputs(data), return_indices_ranked_by="label_quality"
        )
        by_d_mm = lemon.find_label_issues(*inputs(data), return_indices_ranked_by="d_mm")
    assert mask.dtype == bool and mask.shape == (N,)
    np.testing.assert_array_equal(mask, fixed.is_label_issue.to_numpy())
    assert sorted(ranked.tolist()) == np.flatnonzero(mask).tolist()
    scores = fixed.lemon_score.to_numpy()
    assert np.all(np.diff(scores[ranked]) <= 0)  # most severe first
    np.testing.assert_array_equal(by_quality, ranked)  # quality = exp(-score): same order
    assert np.all(np.diff(fixed.d_mm.to_numpy()[by_d_mm]) <= 0)
    with pytest.raises(LemonError, match="return_indices_ranked_by must be None or one of"):
        lemon.find_label_issues(*inputs(data), return_indices_ranked_by="self_confidence")


def test_label_quality_scores_lower_is_worse(data, fixed):
    quality = lemon.get_label_quality_scores(*inputs(data))
    assert quality.shape == (N,) and np.all((quality >= 0) & (quality <= 1))
    np.testing.assert_allclose(quality, np.exp(-fixed.lemon_score.to_numpy()))
    assert roc_auc_score(data["train_is_mislabel"], -quality) > 0.9


def test_lemon_opt_with_known_labels(data):
    known = np.arange(150)
    df = lemon.score_pairs(
        *inputs(data),
        known_issue_idx=known,
        known_is_issue=data["train_is_mislabel"][known],
    )
    assert df.attrs["selection"] == "lemon_opt" and df.attrs["threshold_rule"] == "optimal"
    assert df.attrs["threshold"] == df.attrs["thresholds"]["optimal"]
    assert roc_auc_score(data["train_is_mislabel"], df.lemon_score) > 0.9
    # 0/1 integers are read as booleans
    mask = lemon.find_label_issues(
        *inputs(data),
        known_issue_idx=known,
        known_is_issue=data["train_is_mislabel"][known].astype(int),
    )
    np.testing.assert_array_equal(mask, df.is_label_issue.to_numpy())


def test_captions_and_numeric_threshold(data):
    texts = [f"caption {i % 7}" for i in range(N)]
    df = lemon.score_pairs(data["train_img"], data["train_txt"], texts, threshold=1.0, k=10)
    assert df.attrs["threshold"] == 1.0 and df.given_label[3] == "caption 3"
    np.testing.assert_array_equal(df.is_label_issue, df.lemon_score >= 1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda img, txt, lab: (img, txt, lab[:-1]),
            "image_embeddings, text_embeddings and labels must have the same length, "
            "got 100, 100 and 99",
        ),
        (lambda img, txt, lab: (img[:0], txt[:0], lab[:0]), "no pairs: .* are empty"),
        (
            lambda img, txt, lab: (np.where(np.arange(100)[:, None] == 7, np.nan, img), txt, lab),
            r"image_embeddings has NaN/inf values in 1 rows \(first: row 7\)",
        ),
        (
            lambda img, txt, lab: (img, np.where(np.arange(100)[:, None] >= 98, np.inf, txt), lab),
            r"text_embeddings has NaN/inf values in 2 rows \(first: row 98\)",
        ),
        (
            lambda img, txt, lab: (img, txt, [None if i == 3 else f"c{i}" for i in range(100)]),
            r"labels has 1 missing values \(first: row 3\)",
        ),
        (
            lambda img, txt, lab: (img, txt, np.where(np.arange(100) == 5, np.nan, lab)),
            r"labels has 1 missing values \(first: row 5\)",
        ),
        (lambda img, txt, lab: (img[:, :10], txt, lab), "must have the same dimension"),
        (lambda img, txt, lab: (img[0], txt, lab), "must have the same length|one entry per pair"),
    ],
)
def test_bad_inputs_are_one_line_errors(data, change, message):
    img, txt, lab = change(*inputs(data, 100))
    with pytest.raises(LemonError, match=message) as err:
        lemon.find_label_issues(img, txt, lab, k=5)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        (["False", "True"] * 10, "known_is_issue must hold booleans .* str values such as 'False'"),
        ([0.0, np.nan] * 10, "known_is_issue must hold booleans .* such as nan"),
        ([0, 2] * 10, "known_is_issue must hold booleans .* such as 2"),
    ],
)
def test_known_is_issue_must_be_booleans(data, truth, message):
    with pytest.raises(LemonError, match=message):
        lemon.find_label_issues(
            *inputs(data, 100), known_issue_idx=np.arange(20), known_is_issue=truth, k=5
        )


def test_other_argument_errors(data):
    img, txt, lab = inputs(data, 100)
    with pytest.raises(LemonError, match=r"k=5 needs more than 5 pairs .* got 5"):
        lemon.find_label_issues(img[:5], txt[:5], lab[:5], k=5)
    with pytest.raises(LemonError, match="known_issue_idx must index the data, in \\[0, 100\\)"):
        lemon.find_label_issues(img, txt, lab, known_issue_idx=[100], known_is_issue=[True], k=5)
    with pytest.raises(LemonError, match="must be given together"):
        lemon.find_label_issues(img, txt, lab, known_issue_idx=[1, 2], k=5)
    with pytest.raises(LemonError, match="give image_embeddings or images=, not both"):
        lemon.find_label_issues(img, txt, lab, images=["a.png"] * 100)
    with pytest.raises(LemonError, match="threshold must be a number or one of auto"):
        lemon.find_label_issues(img, txt, lab, threshold="optimal", k=5)
    with pytest.raises(LemonError, match="no text input"):
        lemon.find_label_issues(img, labels=lab, k=5)  # class ids need texts or text embeddings


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """40 small images on disk (red / blue squares), their captions (5 wrong), and a tiny CLIP."""
    from PIL import Image
    from tiny_clip import tiny_clip_checkpoint

    root = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    paths, images, captions = [], [], []
    for i in range(40):
        name = "red" if i % 2 else "blue"
        pixels = np.clip(np.array(colours[name]) + rng.integers(-20, 20, (32, 32, 3)), 0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        path = root / f"img_{i}.png"
        image.save(path)
        paths.append(str(path))
        images.append(image)
        wrong = i < 5
        captions.append(f"a {'blue' if (name == 'red') == wrong else 'red'} square")
    model = tiny_clip_checkpoint(root / "model")
    return {"paths": paths, "images": images, "captions": captions, "model": str(model)}


def test_raw_images_and_texts_go_through_the_embedding_cache(raw, tmp_path):
    from lemon.data.base import FileImages
    from lemon.embed import build_embedder
    from lemon.embed.batching import embed_images, embed_texts

    cache = tmp_path / "cache"
    opts = dict(texts=raw["captions"], model=raw["model"], cache_dir=cache, device="cpu", k=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 40 pairs: the label-free rule warns that it is noisy
        df = lemon.score_pairs(images=raw["paths"], **opts)
        entries = sorted(p.name for p in cache.rglob("*.npy"))
        assert len(entries) == 2  # one image entry, one text entry
        again = lemon.score_pairs(images=raw["paths"], **opts)
        assert sorted(p.name for p in cache.rglob("*.npy")) == entries  # read, not recomputed
        from_pil = lemon.score_pairs(images=raw["images"], **opts)
    np.testing.assert_array_equal(again.lemon_score, df.lemon_score)
    assert df.given_label.tolist() == raw["captions"]  # labels default to the texts
    # the same as embedding with the model directly and passing the embeddings
    embedder = build_embedder(raw["model"], device="cpu")
    img = embed_images(embedder, FileImages(tmp_path, raw["paths"]), 16, 0)
    txt = embed_texts(embedder, raw["captions"])
    expected = lemon.score_pairs(img, txt, raw["captions"], k=5)
    np.testing.assert_allclose(df.lemon_score, expected.lemon_score, atol=1e-6)
    np.testing.assert_allclose(from_pil.lemon_score, expected.lemon_score, atol=1e-4)
    quality = lemon.get_label_quality_scores(images=raw["paths"], **opts)
    np.testing.assert_allclose(quality, np.exp(-df.lemon_score.to_numpy()))


def test_raw_input_errors(raw, tmp_path):
    opts = dict(model=raw["model"], cache_dir=tmp_path, device="cpu", k=5)
    paths = [*raw["paths"][:-1], str(tmp_path / "missing.png")]
    with pytest.raises(LemonError, match=r"1 of 40 images not found \(first: images\[39\]"):
        lemon.find_label_issues(images=paths, texts=raw["captions"], **opts)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    paths = [*raw["paths"][:-1], str(tmp_path / "broken.png")]
    with pytest.raises(LemonError, match=r"1 of 40 images cannot be decoded \(first: images\[39\]"):
        lemon.find_label_issues(images=paths, texts=raw["captions"], **opts)
    with pytest.raises(LemonError, match="images must be file paths or PIL images"):
        lemon.find_label_issues(images=[1] * 40, texts=raw["captions"], **opts)
    with pytest.raises(
        LemonError, match="images, texts and labels must have the same length, got 40, 39 and 39"
    ):
        lemon.find_label_issues(images=raw["paths"], texts=raw["captions"][:-1], **opts)


def test_an_unknown_argument_fails_in_one_line_naming_the_valid_ones(data):
    img, txt, lab = inputs(data, 100)
    with pytest.raises(TypeError) as info:
        lemon.find_label_issues(img, txt, lab, knn_k=5)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "find_label_issues() got an unknown argument 'knn_k'. Did you mean k? Valid: image_embeddings, "
        "text_embeddings, labels, return_indices_ranked_by, images,"
    )
    with pytest.raises(TypeError, match=r"^score_pairs\(\): too many positional arguments\."):
        lemon.score_pairs(img, txt, lab, 5)


def test_quality_scores_refuse_a_threshold_instead_of_ignoring_it(data):
    with pytest.raises(TypeError) as info:
        lemon.get_label_quality_scores(*inputs(data, 100), threshold=0.5)
    assert str(info.value) == (
        "get_label_quality_scores() takes no threshold: label quality scores are not thresholded (one "
        "score per pair); to flag pairs use find_label_issues(..., threshold=...)."
    )


@pytest.mark.parametrize("name", ["find_label_issues", "get_label_quality_scores", "score_pairs"])
def test_every_option_is_in_the_signature_and_documented(name):
    """help() and IDEs see every option: keyword-only after the three inputs, each in the docstring."""
    import inspect

    func = getattr(lemon, name)
    params = inspect.signature(func).parameters
    assert list(params)[:3] == ["image_embeddings", "text_embeddings", "labels"]
    assert all(p.kind is p.KEYWORD_ONLY for p in list(params.values())[3:])
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    doc = inspect.getdoc(func)
    documented = doc.split("Parameters\n----------\n")[1].split("Returns\n-------")[0]
    names = {
        n.strip()
        for line in documented.splitlines()
        if line and not line.startswith(" ")
        for n in line.split(" : ")[0].split(",")
    }
    assert names == set(params)
    assert ("threshold" in params) == (name != "get_label_quality_scores")
