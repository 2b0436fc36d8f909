"""Captioning datasets read from their published files: MSCOCO and Flickr30k (Karpathy splits), MM-IMDb
and CC3M (webdataset shards). MIMIC-CXR lives in :mod:`lemon.data.captioning_medical`.

Karpathy sets keep one caption per image, drawn as the original LEMoN preprocessing did (a legacy
``RandomState(42)``, one draw per image in JSON order), so the same caption is chosen for every run;
``restval`` joins train.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.base import (
    EMPTY_TEXT,
    UNREADABLE_IMAGE,
    Dataset,
    DatasetSplits,
    FileImages,
    PairSplit,
)
from lemon.data.files import keep_readable, read_json, read_metadata, require, require_any
from lemon.data.registry import DATASETS
from lemon.data.sources import TarImages
from lemon.data.splitting import build_splits, named_splits, random_80_10_10

log = logging.getLogger(__name__)
KARPATHY_CAPTION_SEED = 42  # the original preprocessing's np.random.seed(42)


def karpathy_records(path: Path, name: str) -> tuple[list[dict], np.ndarray]:
    """Images of a Karpathy ``dataset_*.json`` and one caption per image (fixed-seed draw, JSON order)."""

    def parse(p: Path) -> tuple[list[dict], np.ndarray]:
        images = read_json(p)["images"]
        rs = np.random.RandomState(KARPATHY_CAPTION_SEED)
        captions = [
            img["sentences"][rs.randint(0, len(img["sentences"]))]["raw"].strip() for img in images
        ]
        return images, np.asarray(captions, dtype=object)

    return read_metadata(
        name,
        path,
        parse,
        "Karpathy split file",
        "{'images': [{'filename', 'split', 'sentences': [{'raw': ...}, ...]}, ...]}",
    )


def _captioning_splits(
    name: str,
    root: Path,
    relpaths: list[str],
    captions: np.ndarray,
    split_names,
    categories=None,
    categories_missing: str | None = None,
) -> DatasetSplits:
    """Official-split captioning data (clean == observed); pairs with an empty caption or an unreadable
    image are dropped from their split and counted there."""
    has_text = np.asarray([str(c).strip() != "" for c in captions], dtype=bool)
    readable, _ = keep_readable(name, root, relpaths)
    pairs = PairSplit(
        "all",
        "captioning",
        FileImages(root, relpaths),
        captions,
        captions.copy(),
        categories=categories,
        categories_missing=categories_missing,
    )
    keep = {EMPTY_TEXT: has_text, UNREADABLE_IMAGE: readable}
    return build_splits(name, "captioning", pairs, named_splits(split_names, name), keep=keep)


def _read_instances(path: Path) -> tuple[dict[int, str], list, list]:
    data = read_json(path)
    return (
        {int(c["id"]): str(c["name"]) for c in data["categories"]},
        [a["image_id"] for a in data["annotations"]],
        [a["category_id"] for a in data["annotations"]],
    )


def coco_categories(
    annotation_files: list[Path], name: str = "mscoco"
) -> dict[int, tuple[str, ...]]:
    """COCO image id -> sorted names of the object categories annotated in it (instances files)."""
    image_ids, cat_ids, names = [], [], {}
    for path in annotation_files:
        found, images, cats = read_metadata(
            name,
            path,
            _read_instances,
            "COCO instances annotations",
            "{'images', 'annotations': [{'image_id', 'category_id'}, ...], "
            "'categories': [{'id', 'name'}, ...]}",
        )
        names.update(found)
        image_ids += images
        cat_ids += cats
    pairs = np.unique(
        np.stack([np.asarray(image_ids, np.int64), np.asarray(cat_ids, np.int64)], 1), axis=0
    )
    out: dict[int, list[str]] = {}
    for img, cat in pairs.tolist():
        out.setdefault(img, []).append(names[cat])
    return {img: tuple(sorted(c)) for img, c in out.items()}


@DATASETS.register("mscoco")
class MSCOCO(Dataset):
    """COCO 2014 images with the Karpathy split; categories from the instances annotations."""

    task: ClassVar[str] = "captioning"
    noise_types: ClassVar[tuple[str, ...]] = ("random", "noun", "cat")
    instances: ClassVar[tuple[str, ...]] = (
        "annotations/instances_train2014.json",
        "annotations/instances_val2014.json",
    )

    def check_exists(self, root: Path) -> None:
        d = Path(root) / self.name
        require(self.name, d / "dataset_coco.json", d / "train2014", d / "val2014")

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        self.check_exists(root)
        d = Path(root) / self.name
        images, captions = karpathy_records(d / "dataset_coco.json", self.name)
        relpaths = [f"{self.name}/{img['filepath']}/{img['filename']}" for img in images]
        files = [d / f for f in self.instances]
        categories, categories_missing = None, None
        if all(f.is_file() for f in files):
            by_image = coco_categories(files, self.name)
            categories = [by_image.get(int(img["cocoid"]), ()) for img in images]
        else:
            missing = next(f for f in files if not f.is_file())
            categories_missing = (
                f"'cat' noise needs the COCO instances annotations: expected "
                f"{missing}. See DataSources.md#{self.name}."
            )
        return _captioning_splits(
            self.name,
            Path(root),
            relpaths,
            captions,
            [img["split"] for img in images],
            categories,
            categories_missing,
        )


@DATASETS.register("flickr30k")
class Flickr30k(Dataset):
    """Flickr30k images with the Karpathy split."""

    task: ClassVar[str] = "captioning"
    noise_types: ClassVar[tuple[str, ...]] = ("random", "noun")

    def check_exists(self, root: Path) -> None:
        d = Path(root) / self.name
        require(self.name, d / "dataset_flickr30k.json", d / "flickr30k_images")

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        self.check_exists(root)
        images, captions = karpathy_records(
            Path(root) / self.name / "dataset_flickr30k.json", self.name
        )
        relpaths = [f"{self.name}/flickr30k_images/{img['filename']}" for img in images]
        return _captioning_splits(
            self.name, Path(root), relpaths, captions, [img["split"] for img in images]
        )


@DATASETS.register("mmimdb")
class MMIMDb(Dataset):
    """MM-IMDb posters with their plot outline as caption and genres as categories; official split.

    Movies without a plot outline are dropped (an empty caption is not a caption) and counted in their
    split's ``dropped``.
    """

    task: ClassVar[str] = "captioning"
    noise_types: ClassVar[tuple[str, ...]] = ("random", "noun", "cat")

    def check_exists(self, root: Path) -> None:
        d = Path(root) / self.name
        require(self.name, d / "split.json", d / "dataset")

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        self.check_exists(root)
        d = Path(root) / self.name
        split = read_metadata(
            self.name,
            d / "split.json",
            _read_mmimdb_split,
            "MM-IMDb split file",
            "{'train': [ids], 'dev': [ids], 'test': [ids]}",
        )
        names = {"train": "train", "dev": "val", "val": "val", "test": "test"}
        ids, split_names = [], []
        for key, movie_ids in split.items():
            if key not in names:
                raise LemonError(
                    f"{d / 'split.json'}: unknown split '{key}' (expected train, dev, test)."
                )
            ids += [str(i) for i in movie_ids]
            split_names += [names[key]] * len(movie_ids)
        require(self.name, *(d / "dataset" / f"{i}.json" for i in ids[:1]))
        with ThreadPoolExecutor(max_workers=16) as pool:
            records = list(
                pool.map(lambda i: _read_movie(d / "dataset" / f"{i}.json"), ids, chunksize=64)
            )
        texts = np.asarray([r[0] for r in records], dtype=object)
        if (texts == "").any():
            log.info(
                "%s: dropped %d movies without a plot outline", self.name, int((texts == "").sum())
            )
        relpaths = [f"{self.name}/dataset/{i}.jpeg" for i in ids]
        return _captioning_splits(
            self.name, Path(root), relpaths, texts, split_names, [r[1] for r in records]
        )


def _read_mmimdb_split(path: Path) -> dict[str, list]:
    split = read_json(path)
    if not isinstance(split, dict) or not all(isinstance(v, list) for v in split.values()):
        raise TypeError("not a JSON object of id lists")
    return split


def _read_movie(path: Path) -> tuple[str, tuple[str, ...]]:
    """(plot outline, genres) of one MM-IMDb movie JSON; a missing file or outline gives ''."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return "", ()
    outline = data.get("plot outline") or ""
    if isinstance(outline, list):
        outline = " ".join(outline)
    return " ".join(str(outline).split()), tuple(data.get("genres") or ())


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")


def _looks_like_image(head: bytes) -> bool:
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def index_shard(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Image members, their byte offsets and sizes, and the captions of one webdataset tar shard.

    A sample is ``<key>.<image ext>`` + ``<key>.txt`` (key = member path up to the first dot of its file
    name). Returns (members, offsets, sizes, captions, readable); ``readable`` is False for image members that
    are empty or whose first bytes are no known image format (a cheap check: no decode).
    """
    images: dict[str, tarfile.TarInfo] = {}
    texts: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                head, base = os.path.split(m.name)
                key, _, ext = base.partition(".")
                key = f"{head}/{key}" if head else key
                if ext.lower() == "txt":
                    member = tar.extractfile(m)
                    assert member is not None  # a regular file (checked above) always opens
                    texts[key] = member.read().decode("utf-8", "replace").strip()
                elif "." + ext.lower() in IMAGE_EXTS:
                    images[key] = m
    except tarfile.TarError as err:
        raise LemonError(f"{path}: not an uncompressed tar shard ({err}).") from err
    keys = [k for k in images if texts.get(k)]
    readable = np.zeros(len(keys), dtype=bool)
    with open(path, "rb") as f:
        for j, k in enumerate(keys):
            f.seek(images[k].offset_data)
            readable[j] = images[k].size > 0 and _looks_like_image(f.read(16))
    return (
        [images[k].name for k in keys],
        np.asarray([images[k].offset_data for k in keys], np.int64),
        np.asarray([images[k].size for k in keys], np.int64),
        [texts[k] for k in keys],
        readable,
    )


@DATASETS.register("cc3m")
class CC3M(Dataset):
    """Conceptual Captions 3M as webdataset shards; web captions with no ground truth (use --real_dataset).

    Shards whose name contains 'val' form val and test (halved by ``data_seed``); the others form train.
    Without validation shards, train shards are split 80/10/10 by ``data_seed``.
    """

    task: ClassVar[str] = "captioning"
    noise_types: ClassVar[tuple[str, ...]] = ("real",)

    def check_exists(self, root: Path) -> None:
        require_any(self.name, Path(root) / self.name, "**/*.tar", "webdataset .tar shards")

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        d = Path(root) / self.name
        shards = require_any(self.name, d, "**/*.tar", "webdataset .tar shards")
        rel = [str(p.relative_to(d)) for p in shards]
        parts = [index_shard(p) for p in shards]
        shard_index = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)]).astype(
            np.int64
        )
        members = [m for p in parts for m in p[0]]
        captions = np.asarray([c for p in parts for c in p[3]], dtype=object)
        keep = np.concatenate([p[4] for p in parts])
        if (~keep).any():
            log.warning(
                "%s: skipping %d empty or non-image shard members", self.name, int((~keep).sum())
            )
        images = TarImages(
            d,
            rel,
            shard_index,
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            members,
        )
        val_shard = np.asarray(
            [bool(re.search(r"(?<![a-z])val", r.lower())) for r in rel] + [False]
        )
        is_val = val_shard[shard_index]
        if is_val.any():
            from sklearn.model_selection import train_test_split

            val, test = train_test_split(
                np.flatnonzero(is_val), test_size=0.5, random_state=data_seed
            )
            index = {"train": np.flatnonzero(~is_val), "val": val, "test": test}
        else:
            index = random_80_10_10(len(members), data_seed, self.name)
        pairs = PairSplit("all", self.task, images, captions, captions.copy())
        return build_splits(
            self.name,
            self.task,
            pairs,
            index,
            keep={UNREADABLE_IMAGE: keep},
            has_ground_truth=False,
        )
