"""The embedding cache and ``embed_dataset``: hits, misses, a second run that embeds nothing, determinism."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_clip import tiny_clip_checkpoint

from lemon.core.errors import LemonError
from lemon.data.base import DEFAULT_PROMPT, ArrayImages, DatasetSplits, Dropped, PairSplit
from lemon.embed import build_embedder, embed_dataset
from lemon.embed.base import Embedder, EmbedOptions
from lemon.embed.cache import EmbeddingCache, content_key


class CountingCalls:
    """Counts calls of Embedder.encode_images / encode_texts / load across all embedder instances."""

    def __init__(self, monkeypatch) -> None:
        self.calls = {"encode_images": 0, "encode_texts": 0, "load": 0}
        for name in self.calls:
            original = getattr(Embedder, name)
            monkeypatch.setattr(Embedder, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def wrapper(emb, *args, **kwargs):
            self.calls[name] += 1 if name != "load" or not emb.loaded else 0
            return original(emb, *args, **kwargs)

        return wrapper


class FakeEmbedder:
    id, name, preprocessing = "fake-model", "fake", "fake/v1"


def _splits(task: str = "captioning", noisy_shift: int = 0, n: int = 12) -> DatasetSplits:
    rng = np.random.default_rng(0)
    parts = {}
    for i, s in enumerate(("train", "val", "test")):
        pixels = rng.integers(0, 256, (n, 24, 24, 3), dtype=np.uint8)
        ids = [f"fake/{s}/{j}" for j in range(n)]
        if task == "captioning":
            clean = np.asarray([f"caption {s} {j}" for j in range(n)], dtype=object)
            observed = np.roll(clean, noisy_shift) if noisy_shift else clean.copy()
            parts[s] = PairSplit(
                s,
                task,
                ArrayImages(pixels, ids),
                clean,
                observed,
                dropped=Dropped().add("unreadable image", np.arange(i)),
            )
        else:
            clean = np.arange(n) % 3
            observed = (clean + (np.arange(n) < noisy_shift)) % 3
            parts[s] = PairSplit(
                s,
                task,
                ArrayImages(pixels, ids),
                clean,
                observed,
                class_names=["cat", "dog", "emu"],
            )
    return DatasetSplits(
        "fake", task, parts, class_names=["cat", "dog", "emu"] if task != "captioning" else None
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(tiny_clip_checkpoint(tmp_path_factory.mktemp("ckpt"), "open_clip"))


def _cfg(ckpt: str, cache, **kw) -> dict:
    """What the embedding stage is given: the model, the cache, the prompt and the loader sizes."""
    return {"ckpt": ckpt, "cache": Path(cache), "num_workers": 0, "batch_size": 8, **kw}


def embed(splits: DatasetSplits, cfg: dict):
    """``embed_dataset`` as the pipeline calls it."""
    embedder = build_embedder(cfg["ckpt"], device="cpu", cache_root=cfg["cache"])
    options = EmbedOptions(
        prompt=cfg.get("prompt", DEFAULT_PROMPT),
        batch_size=cfg["batch_size"],
        num_workers=cfg["num_workers"],
        image_identity=cfg.get("image_identity", "stat"),
    )
    return embed_dataset(splits, embedder, EmbeddingCache(cfg["cache"]), options)


def dropped(features) -> dict[str, int]:
    return {s: len(d) for s, d in features.provenance.dropped.items()}


def test_content_key_depends_on_everything():
    base = content_key("m", "p", "text", ["a", "b"])
    assert base == content_key("m", "p", "text", ["a", "b"])
    others = {
        content_key("m2", "p", "text", ["a", "b"]),
        content_key("m", "p2", "text", ["a", "b"]),
        content_key("m", "p", "image", ["a", "b"]),
        content_key("m", "p", "text", ["b", "a"]),
        content_key("m", "p", "text", ["a b"]),
        content_key("m", "p", "text", ["a", "b", ""]),
    }
    assert base not in others and len(others) == 6


def test_cache_hit_miss_and_sidecar(tmp_path):
    cache = EmbeddingCache(tmp_path)
    calls = []

    def compute():
        return calls.append(1) or np.arange(6, dtype=np.float64).reshape(3, 2)

    first = cache.get_or_compute(FakeEmbedder(), "text", ["a", "b", "c"], compute)
    second = cache.get_or_compute(FakeEmbedder(), "text", ["a", "b", "c"], compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32
    key = content_key("fake-model", "fake/v1", "text", ["a", "b", "c"])
    sidecar = json.loads((tmp_path / "embeddings" / "fake-model" / f"{key}.json").read_text())
    assert sidecar["model"] == "fake" and sidecar["preprocessing"] == "fake/v1"
    assert (sidecar["n"], sidecar["dim"], sidecar["dtype"], sidecar["kind"]) == (
        3,
        2,
        "float32",
        "text",
    )
    cache.get_or_compute(FakeEmbedder(), "text", ["a", "b"], lambda: np.zeros((2, 2)))
    assert cache.misses == 2  # a different input list is a different entry


def test_corrupt_entry_is_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.get_or_compute(FakeEmbedder(), "text", ["a"], lambda: np.ones((1, 4)))
    key = content_key("fake-model", "fake/v1", "text", ["a"])
    np.save(
        tmp_path / "embeddings" / "fake-model" / f"{key}.npy", np.ones((2, 4), dtype=np.float32)
    )
    out = cache.get_or_compute(FakeEmbedder(), "text", ["a"], lambda: np.full((1, 4), 7.0))
    assert cache.misses == 2 and np.array_equal(out, np.full((1, 4), 0.5))  # recomputed, unit-norm


def test_wrong_row_count_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="returned 1 rows for 2 text inputs"):
        EmbeddingCache(tmp_path).get_or_compute(
            FakeEmbedder(), "text", ["a", "b"], lambda: np.ones((1, 4))
        )


def test_second_run_embeds_nothing_and_is_identical(ckpt, tmp_path, monkeypatch):
    counter = CountingCalls(monkeypatch)
    cfg = _cfg(ckpt, tmp_path)
    first = embed(_splits(noisy_shift=3), cfg)
    assert counter.calls["encode_images"] > 0 and counter.calls["encode_texts"] > 0
    assert (first.provenance.cache_hits, first.provenance.cache_misses) == (0, 6)
    assert dropped(first) == {"train": 0, "val": 1, "test": 2}
    counter.calls.update(encode_images=0, encode_texts=0, load=0)
    second = embed(_splits(noisy_shift=3), cfg)
    assert counter.calls == {"encode_images": 0, "encode_texts": 0, "load": 0}  # model never loaded
    assert (second.provenance.cache_hits, second.provenance.cache_misses) == (6, 0)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[s].img, second.splits[s].img)
        np.testing.assert_array_equal(first.splits[s].txt, second.splits[s].txt)
    npys = list((tmp_path / "embeddings").rglob("*.npy"))
    assert len(npys) == 6 and len(list((tmp_path / "embeddings").rglob("*.json"))) == 6


def test_noise_change_re_embeds_only_texts(ckpt, tmp_path, monkeypatch):
    cfg = _cfg(ckpt, tmp_path)
    clean = embed(_splits(noisy_shift=0), cfg)
    counter = CountingCalls(monkeypatch)
    noisy = embed(_splits(noisy_shift=2), cfg)
    assert counter.calls["encode_images"] == 0 and counter.calls["encode_texts"] > 0
    assert (noisy.provenance.cache_hits, noisy.provenance.cache_misses) == (3, 3)
    train_c, train_n = clean.splits["train"], noisy.splits["train"]
    np.testing.assert_array_equal(train_c.img, train_n.img)
    # a rolled caption list: row i of the noisy texts is row i-2 of the clean ones
    np.testing.assert_allclose(train_n.txt, np.roll(train_c.txt, 2, axis=0), rtol=1e-5, atol=1e-6)
    assert train_n.is_mislabel.sum() == 12 and not train_c.is_mislabel.any()


def test_features_content(ckpt, tmp_path):
    splits = _splits(noisy_shift=3)
    feats = embed(splits, _cfg(ckpt, tmp_path))
    train = feats.splits["train"]
    assert feats.task == "captioning" and feats.label_prompt_txt is None
    assert list(train.texts) == list(splits["train"].observed)
    assert list(train.image_refs) == list(splits["train"].images.ids)
    np.testing.assert_allclose(np.linalg.norm(train.img, axis=1), 1, atol=1e-5)
    assert feats.provenance.embedder == ckpt and feats.provenance.embedder_id.startswith(
        "open_clip-"
    )


def test_classification_prompts_and_class_embeddings(ckpt, tmp_path):
    splits = _splits("classification", noisy_shift=4)
    feats = embed(splits, _cfg(ckpt, tmp_path, prompt="a picture of "))
    train = feats.splits["train"]
    assert feats.class_names == ["cat", "dog", "emu"] and feats.label_prompt_txt.shape == (
        3,
        train.img.shape[1],
    )
    assert train.texts[0] == "a picture of " + ["cat", "dog", "emu"][splits["train"].observed[0]]
    # each sample's text embedding is its observed class prompt's embedding
    np.testing.assert_allclose(
        train.txt, feats.label_prompt_txt[splits["train"].observed], rtol=1e-5, atol=1e-6
    )
    assert train.is_mislabel.sum() == 4


def test_no_ground_truth_keeps_labels_out(ckpt, tmp_path):
    import dataclasses

    splits = dataclasses.replace(_splits(noisy_shift=2), has_ground_truth=False)
    feats = embed(splits, _cfg(ckpt, tmp_path))
    assert feats.splits["val"].is_mislabel is None and feats.splits["val"].clean is None


def _file_splits(root, n: int = 10, bad: tuple[int, ...] = (1, 6)) -> DatasetSplits:
    """Captioning splits of JPEG files; train images ``bad`` are truncated JPEGs (header fine, decode fails)."""
    from fake_data import jpeg_bytes, truncated_jpeg_bytes

    from lemon.data.base import FileImages

    rng = np.random.default_rng(0)
    parts = {}
    for s in ("train", "val", "test"):
        relpaths = [f"{s}/{j}.jpg" for j in range(n)]
        for j, rel in enumerate(relpaths):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            broken = s == "train" and j in bad
            (root / rel).write_bytes(
                truncated_jpeg_bytes(rng) if broken else jpeg_bytes(rng, size=24)
            )
        clean = np.asarray([f"caption {s} {j}" for j in range(n)], dtype=object)
        parts[s] = PairSplit(
            s,
            "captioning",
            FileImages(root, relpaths),
            clean,
            np.roll(clean, 1),
            categories=[(f"cat{j}",) for j in range(n)],
            source_rows=np.arange(n),
            dropped=Dropped().add("unreadable image", [99]),
        )
    return DatasetSplits("files", "captioning", parts)


def test_undecodable_images_are_dropped_counted_and_cached_aligned(ckpt, tmp_path, monkeypatch):
    splits = _file_splits(tmp_path / "data")
    # two DataLoader workers (10 images > batch of 4): the decode error happens inside a worker process
    cfg = _cfg(ckpt, tmp_path / "cache", num_workers=2, batch_size=4)
    first = embed(splits, cfg)
    # the loader's 1 + 2 undecodable
    assert dropped(first) == {"train": 3, "val": 1, "test": 1}
    assert first.provenance.dropped["train"].counts() == {
        "unreadable image": 1,
        "undecodable image": 2,
    }
    assert list(first.provenance.dropped["train"].rows) == [99, 1, 6]
    train = first.splits["train"]
    keep = [j for j in range(10) if j not in (1, 6)]
    assert list(train.image_refs) == [f"train/{j}.jpg" for j in keep]
    assert list(train.ids) == keep  # scores.csv idx: the row in the split as loaded
    assert (
        list(train.texts) == list(splits["train"].observed[keep])
        and len(train.img) == len(train.txt) == 8
    )
    assert list(train.clean) == list(splits["train"].clean[keep]) and np.isfinite(train.img).all()
    assert len(first.splits["val"]) == 10 and len(splits["train"].dropped) == 1  # input untouched
    # the texts embedded are the kept rows' texts: each row matches its caption embedded on its own
    alone = embed(
        DatasetSplits(
            "files",
            "captioning",
            {
                s: PairSplit(
                    s,
                    "captioning",
                    splits[s].images.subset(keep if s == "train" else np.arange(10)),
                    splits[s].clean[keep if s == "train" else slice(None)],
                    splits[s].observed[keep if s == "train" else slice(None)],
                )
                for s in ("train", "val", "test")
            },
        ),
        cfg,
    )
    np.testing.assert_allclose(train.txt, alone.splits["train"].txt, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(train.img, alone.splits["train"].img, rtol=1e-5, atol=1e-5)
    # the cached image entry of train is keyed by all 10 ids and holds NaN exactly on the 2 undecodable rows
    nan_entries = []
    for npy in (tmp_path / "cache" / "embeddings").rglob("*.npy"):
        array = np.load(npy)
        sidecar = json.loads(npy.with_suffix(".json").read_text())
        assert array.shape[0] == sidecar["n"]
        if np.isnan(array).any():
            nan_entries.append((sidecar, np.flatnonzero(np.isnan(array).any(axis=1)).tolist()))
    assert len(nan_entries) == 1
    sidecar, rows = nan_entries[0]
    assert sidecar["kind"] == "image/files" and sidecar["n"] == 10 and rows == [1, 6]
    # a second run reads the cache, never decodes or loads the model, and drops the same rows
    counter = CountingCalls(monkeypatch)
    second = embed(splits, {**cfg, "num_workers": 0})
    assert counter.calls == {"encode_images": 0, "encode_texts": 0, "load": 0}
    assert dropped(second) == dropped(first)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(first.splits[s].img, second.splits[s].img)
        np.testing.assert_array_equal(first.splits[s].txt, second.splits[s].txt)


def test_dropping_undecodable_rows_cuts_every_per_row_array():
    from lemon.embed.stage import drop_undecodable

    n = 5
    pixels = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    clean = np.asarray([f"c{j}" for j in range(n)], dtype=object)
    part = PairSplit(
        "train",
        "captioning",
        ArrayImages(pixels, [f"i{j}" for j in range(n)]),
        clean,
        clean.copy(),
        categories=[(f"k{j}",) for j in range(n)],
        source_rows=np.arange(10, 10 + n),
        dropped=Dropped().add("unreadable image", [7, 8]),
    )
    img = np.ones((n, 3), dtype=np.float32)
    img[[0, 3]] = np.nan
    kept, kept_img, ids, rows = drop_undecodable(part, img, list(part.images.ids), "fake")
    assert ids == ["i1", "i2", "i4"] and list(kept.images.ids) == ids and kept_img.shape == (3, 3)
    assert list(rows) == [1, 2, 4]
    assert list(kept.clean) == ["c1", "c2", "c4"] and kept.categories == [("k1",), ("k2",), ("k4",)]
    assert list(kept.source_rows) == [11, 12, 14]
    assert len(kept.dropped) == 4 and len(part.dropped) == 2
    assert list(kept.dropped.rows[2:]) == [10, 13] and kept.dropped.count("undecodable image") == 2
    with pytest.raises(LemonError, match="no image of the 'train' split can be decoded"):
        drop_undecodable(
            part, np.full((n, 3), np.nan, dtype=np.float32), list(part.images.ids), "fake"
        )


def test_an_image_replaced_under_the_same_path_is_embedded_again(ckpt, tmp_path, monkeypatch):
    """The cache never serves stale embeddings: a repaired (or edited) file changes the image fingerprint."""
    import os

    from fake_data import jpeg_bytes

    splits = _file_splits(tmp_path / "data")
    cfg = _cfg(ckpt, tmp_path / "cache")
    first = embed(splits, cfg)
    assert dropped(first)["train"] == 3
    counter = CountingCalls(monkeypatch)
    assert embed(splits, cfg).provenance.cache_misses == 0  # untouched files: all from the cache
    repaired = tmp_path / "data" / "train" / "1.jpg"  # was a truncated JPEG
    repaired.write_bytes(jpeg_bytes(np.random.default_rng(7), size=24))
    os.utime(repaired, ns=(1, 1))  # whatever the clock, the stamp differs from the first write
    again = embed(splits, cfg)
    # train's images again, and its captions (one more row is kept now); val and test from the cache
    assert again.provenance.cache_misses == 2 and counter.calls["encode_images"] > 0
    assert dropped(again)["train"] == 2 and len(again.splits["train"]) == 9
    np.testing.assert_array_equal(again.splits["val"].img, first.splits["val"].img)


def test_in_memory_pixels_key_the_cache(tmp_path):
    """Array images: same ids, other pixels -> another entry (CIFAR, demo)."""
    from lemon.data.base import ArrayImages

    pixels = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    a = ArrayImages(pixels, ["x/0", "x/1", "x/2"])
    b = ArrayImages(pixels + 1, ["x/0", "x/1", "x/2"])
    assert a.fingerprint() == ArrayImages(pixels.copy(), ["x/0", "x/1", "x/2"]).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    cache = EmbeddingCache(tmp_path)
    for source in (a, a, b):
        cache.get_or_compute(
            FakeEmbedder(),
            "image/x",
            source.ids,
            lambda: np.ones((3, 4)),
            content=source.fingerprint(),
        )
    assert (cache.hits, cache.misses) == (1, 2)


def _entry(cache: EmbeddingCache, source, compute, calls: list):
    def counted():
        calls.append(1)
        return compute()

    return cache.get_or_compute(
        FakeEmbedder(), "image/x", source.ids, counted, content=source.fingerprint()
    )


@pytest.mark.parametrize("damage", ["same-size bytes", "no checksum", "unreadable sidecar"])
def test_a_damaged_entry_is_recomputed_with_a_warning(tmp_path, caplog, damage):
    """The sidecar records the sha256 of the array; a read that does not verify recomputes (and says so)
    instead of serving wrong embeddings."""
    source = ArrayImages(np.zeros((4, 2, 2, 3), np.uint8), [f"x/{i}" for i in range(4)])
    raw_rows = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    truth = raw_rows / np.linalg.norm(raw_rows, axis=1, keepdims=True)  # entries hold unit rows
    cache, calls = EmbeddingCache(tmp_path), []
    _entry(cache, source, lambda: raw_rows, calls)
    (npy,) = (tmp_path / "embeddings").rglob("*.npy")
    sidecar = npy.with_suffix(".json")
    stored = np.load(npy)
    np.testing.assert_allclose(stored, truth, rtol=1e-6)
    assert json.loads(sidecar.read_text())["sha256"] == hashlib.sha256(stored.tobytes()).hexdigest()
    if damage == "same-size bytes":
        raw = bytearray(npy.read_bytes())
        raw[-4:] = b"\x00\x00\x80\x7f"  # the last value becomes +inf: same size, same shape
        npy.write_bytes(bytes(raw))
    elif damage == "no checksum":
        info = json.loads(sidecar.read_text())
        del info["sha256"]
        sidecar.write_text(json.dumps(info))
    else:
        sidecar.write_text("{")
    with caplog.at_level("WARNING", logger="lemon.embed.cache"):
        again = _entry(EmbeddingCache(tmp_path), source, lambda: raw_rows, calls)
    assert len(calls) == 2 and "recomputing it" in caplog.text
    np.testing.assert_array_equal(again, stored)
    calls.clear()
    np.testing.assert_array_equal(
        _entry(EmbeddingCache(tmp_path), source, lambda: raw_rows, calls), stored
    )
    assert calls == []  # repaired: read from the cache again


def test_content_identity_sees_a_same_size_same_mtime_replacement(tmp_path):
    """'stat' identity (the default) cannot tell a file replaced by another of the same size with its
    mtime kept (cp -p, rsync -a); 'content' identity hashes the bytes and can."""
    from lemon.data.base import FileImages

    for name, byte in (("a.bin", b"a"), ("b.bin", b"b")):
        (tmp_path / name).write_bytes(byte * 64)
    images = FileImages(tmp_path, ["a.bin", "b.bin"])
    stat_before, content_before = images.fingerprint(), images.fingerprint(content=True)
    st = (tmp_path / "a.bin").stat()
    (tmp_path / "a.bin").write_bytes(b"c" * 64)
    os.utime(tmp_path / "a.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert images.fingerprint() == stat_before  # the documented limit of 'stat'
    assert images.fingerprint(content=True) != content_before
    (tmp_path / "a.bin").write_bytes(b"a" * 64)
    assert images.fingerprint(content=True) == content_before


def test_image_identity_content_reembeds_a_replaced_file(ckpt, tmp_path):
    splits = _file_splits(tmp_path / "data", bad=())
    cfg = _cfg(ckpt, tmp_path / "cache", image_identity="content")
    first = embed(splits, cfg)
    replaced = tmp_path / "data" / "val" / "0.jpg"
    st = replaced.stat()
    buf = io.BytesIO()  # another picture, padded to the same byte size (decoders ignore the tail)
    Image.fromarray(np.full((24, 24, 3), 200, np.uint8)).save(buf, format="BMP")
    replaced.write_bytes(buf.getvalue().ljust(st.st_size, b"\0"))
    os.utime(replaced, ns=(st.st_atime_ns, st.st_mtime_ns))
    stat_run = embed(splits, {**cfg, "image_identity": "stat", "cache": tmp_path / "cache2"})
    again = embed(splits, cfg)
    assert again.provenance.cache_misses == 1  # val's images only
    np.testing.assert_allclose(again.splits["val"].img[0], stat_run.splits["val"].img[0], atol=1e-6)
    assert not np.allclose(again.splits["val"].img[0], first.splits["val"].img[0], atol=1e-4)
    with pytest.raises(
        LemonError, match=r"Unknown image_identity 'bytes'\. Available: stat, content"
    ):
        embed(splits, {**cfg, "image_identity": "bytes"})


def test_embed_options_travel_as_one_checked_value():
    """The run's embedding flags become one EmbedOptions (the dataset's prompt with them); bad values
    fail in one line when it is built, before anything is embedded."""
    from lemon.core.errors import LemonError
    from lemon.run.config import config_from_args
    from lemon.run.load import embed_options

    cfg = config_from_args(
        [
            "--output_dir",
            "x",
            "--batch_size",
            "16",
            "--num_workers",
            "0",
            "--image_identity",
            "content",
        ]
    )
    assert embed_options(cfg, "A picture of ") == EmbedOptions(
        prompt="A picture of ",
        batch_size=16,
        num_workers=0,
        image_identity="content",
        image_decode="cpu",
    )
    with pytest.raises(
        LemonError, match=r"^Unknown image_identity 'bytes'\. Available: stat, content\.$"
    ):
        EmbedOptions(image_identity="bytes")
    with pytest.raises(LemonError, match=r"^Unknown image_decode 'tpu'\. Available: cpu, gpu\.$"):
        EmbedOptions(image_decode="tpu")
    with pytest.raises(LemonError, match="batch_size must be >= 1"):
        EmbedOptions(batch_size=0)
