"""Bring-your-own data: a table (``--dataset csv`` / ``parquet``) or an ImageFolder tree (``folder``).

A table has one row per image-text pair: an image column (a path, absolute or relative to ``--image_root``
which defaults to the table's folder; in parquet also encoded image bytes or a ``{'bytes': ...}`` struct)
and either a caption column (captioning) or a class-label column (classification). An optional clean
column holds the true caption/label: then the data carries its own noise and is evaluated as it is (noise
type ``real``); without it, score it with ``--real_dataset`` or inject noise to benchmark. An optional
``split`` column (train / val / test) fixes the splits; otherwise they are 80/10/10 by ``data_seed``.
Image ids are absolute paths (or ``sha1:<digest>`` of image bytes), so two tables never share cache entries.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lemon.data.base import (
    UNREADABLE_IMAGE,
    Dataset,
    DatasetSplits,
    FileImages,
    PairSplit,
    TableOptions,
)
from lemon.data.files import IMAGE_SUFFIXES, readable_bytes_mask, readable_mask
from lemon.data.registry import DATASETS
from lemon.data.sources import BytesImages
from lemon.data.splitting import build_splits, named_splits, random_80_10_10
from lemon.errors import DatasetNotFoundError, LemonError

log = logging.getLogger(__name__)
VAL_DIRS = ("val", "validation", "valid", "dev")


class ConfigurableDataset(Dataset, abstract=True):
    """A dataset whose files and columns the user names (``options.table``: path, columns)."""

    what: ClassVar[str] = ""  # what --data_path must point to (for the error message)

    @property
    def table(self) -> TableOptions:
        return self.options.table

    @property
    def path(self) -> Path | None:
        return Path(self.table.path).expanduser() if self.table.path else None

    def check_exists(self, root: Path) -> None:
        if self.path is None:
            raise DatasetNotFoundError(
                f"Dataset '{self.name}' needs --data_path ({self.what}). "
                f"See DataSources.md#{self.name}."
            )
        if not self.path.exists():
            raise DatasetNotFoundError(
                f"Dataset '{self.name}' not found: expected {self.path} (from "
                f"--data_path). See DataSources.md#{self.name}."
            )


def _file_images(paths: list[str], base: Path) -> FileImages:
    """FileImages over absolute paths (ids = absolute paths without the filesystem anchor)."""
    absolute = [Path(p) if os.path.isabs(p) else (base / p) for p in paths]
    absolute = [Path(os.path.abspath(p)) for p in absolute]
    anchor = Path(absolute[0].anchor) if absolute else Path("/")
    return FileImages(anchor, [str(p.relative_to(p.anchor)) for p in absolute])


def _blob(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
        return bytes(value["bytes"])
    return None


class _Table(ConfigurableDataset, abstract=True):
    """Shared loader of csv and parquet tables."""

    task: ClassVar[str] = "any"
    noise_types: ClassVar[tuple[str, ...]] = ("real", "random", "noun", "symmetric", "asymmetric")

    @property
    def image_root(self) -> Path | None:
        return Path(self.table.image_root).expanduser() if self.table.image_root else None

    @property
    def columns(self) -> dict[str, str | None]:
        t = self.table
        return {
            "image": t.image_column,
            "text": t.text_column,
            "label": t.label_column,
            "clean": t.clean_column,
        }

    def read(self):  # -> pandas.DataFrame
        raise NotImplementedError

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        self.check_exists(root)
        df = self.read()
        cols = self.columns
        text = bool(cols["text"]) and cols["text"] in df
        label = bool(cols["label"]) and cols["label"] in df
        if cols["image"] not in df or text == label:
            problem = (
                f"both a caption column '{cols['text']}' and a label column '{cols['label']}'; pass "
                f"--text_column '' or --label_column '' to pick one"
                if text and label
                else f"an image column '{cols['image']}' and a caption column '{cols['text']}' or a label "
                f"column '{cols['label']}' (set them with --image_column / --text_column / "
                f"--label_column)"
            )
            raise LemonError(
                f"{self.path}: the table needs {problem}; its columns are {list(df.columns)}."
            )
        if cols["clean"] and cols["clean"] not in df:
            raise LemonError(
                f"{self.path}: no clean column '{cols['clean']}' (--clean_column); its columns "
                f"are {list(df.columns)}."
            )
        task = "captioning" if text else "classification"
        observed_col = cols["text"] if text else cols["label"]
        df = df[df[observed_col].notna() & df[cols["image"]].notna()].reset_index(drop=True)
        if task == "captioning":
            df = df[df[observed_col].astype(str).str.strip() != ""].reset_index(drop=True)
        if df.empty:
            raise LemonError(
                f"{self.path}: no row has both an image and a non-empty '{observed_col}'."
            )
        observed = df[observed_col].to_numpy()
        clean = df[cols["clean"]].to_numpy() if cols["clean"] else observed.copy()
        class_names = None
        if task == "captioning":
            observed = np.asarray([str(t).strip() for t in observed], dtype=object)
            clean = np.asarray([str(t).strip() for t in clean], dtype=object)
        else:
            class_names, ids = _class_ids(np.concatenate([observed, clean]))
            observed, clean = ids[: len(observed)], ids[len(observed) :]
        images, keep = self._images(df[cols["image"]].tolist())
        index = (
            named_splits(df["split"].astype(str).to_numpy(), self.name)
            if "split" in df
            else random_80_10_10(len(df), data_seed)
        )
        pairs = PairSplit(
            "all",
            task,
            images,
            clean,
            observed,
            class_names=class_names,
            intrinsic_noise=bool(cols["clean"]),
        )
        return build_splits(
            self.name,
            task,
            pairs,
            index,
            keep={UNREADABLE_IMAGE: keep},
            class_names=class_names,
            has_ground_truth=bool(cols["clean"]),
        )

    def _images(self, values: list[Any]):
        blobs = [_blob(v) for v in values]
        if all(b is not None for b in blobs):
            ids = ["sha1:" + hashlib.sha1(b).hexdigest() for b in blobs]
            return BytesImages(blobs, ids), readable_bytes_mask(blobs)
        if any(b is not None for b in blobs):
            raise LemonError(
                f"{self.path}: column '{self.columns['image']}' mixes image bytes and paths."
            )
        base = self.image_root or self.path.parent
        images = _file_images([str(v) for v in values], base)
        keep = readable_mask(images.root, images.relpaths)
        if (~keep).any():
            log.warning(
                "%s: skipping %d missing or unreadable image(s) of %d (first: %s)",
                self.name,
                int((~keep).sum()),
                len(keep),
                images.root / images.relpaths[int(np.argmin(keep))],
            )
        return images, keep


def _class_ids(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Class names (numeric order for integer labels, else sorted strings) and the id of every value."""
    as_text = np.asarray([str(v).strip() for v in values], dtype=object)
    names = np.unique(as_text)
    if all(n.lstrip("-").isdigit() for n in names):
        names = np.asarray(sorted(names, key=int), dtype=object)
    lookup = {n: i for i, n in enumerate(names)}
    return [str(n) for n in names], np.asarray([lookup[v] for v in as_text], dtype=np.int64)


@DATASETS.register("csv")
class CsvTable(_Table):
    """A CSV table of image paths and captions or labels (``--data_path table.csv``)."""

    what: ClassVar[str] = "a .csv table with an image column and a caption or label column"

    def read(self):
        import pandas as pd

        try:
            return pd.read_csv(self.path)
        except (ValueError, OSError, UnicodeDecodeError) as err:
            raise LemonError(f"Cannot read {self.path} as CSV ({err}).") from err


@DATASETS.register("parquet")
class ParquetTable(_Table):
    """A parquet table (``--data_path table.parquet``); the image column may hold paths or image bytes."""

    what: ClassVar[str] = "a .parquet table with an image column and a caption or label column"

    def read(self):
        import pandas as pd

        try:
            return pd.read_parquet(self.path)
        except ImportError as err:
            from lemon.errors import MissingDependencyError

            raise MissingDependencyError(
                "Reading parquet needs pyarrow: pip install pyarrow."
            ) from err
        except (ValueError, OSError) as err:
            raise LemonError(f"Cannot read {self.path} as parquet ({err}).") from err


@DATASETS.register("folder")
class ImageFolderDataset(ConfigurableDataset):
    """An ImageFolder tree ``<data_path>/<class>/<image>``; labels = folder names (no clean labels).

    With ``train/``, ``val/`` (or validation/valid/dev) and ``test/`` sub-trees, those are the splits;
    otherwise all images are split 80/10/10 by ``data_seed``.
    """

    task: ClassVar[str] = "classification"
    noise_types: ClassVar[tuple[str, ...]] = ("real", "symmetric", "asymmetric")
    what: ClassVar[str] = "the root of an ImageFolder tree <root>/<class>/<image>"

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        self.check_exists(root)
        top = {p.name for p in self.path.iterdir() if p.is_dir()}
        val_dir = next((v for v in VAL_DIRS if v in top), None)
        trees = (
            {"train": "train", "val": val_dir, "test": "test"}
            if {"train", "test"} <= top and val_dir
            else {"all": "."}
        )
        files, labels, split_of = [], [], []
        for split, sub in trees.items():
            for cls_dir in sorted(p for p in (self.path / sub).iterdir() if p.is_dir()):
                found = sorted(f for f in cls_dir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
                files += [str(f) for f in found]
                labels += [cls_dir.name] * len(found)
                split_of += [split] * len(found)
        if not files:
            raise DatasetNotFoundError(
                f"Dataset 'folder' not found: no images in class folders under "
                f"{self.path}. See DataSources.md#folder."
            )
        class_names, ids = _class_ids(np.asarray(labels, dtype=object))
        images = _file_images(files, self.path)
        keep = readable_mask(images.root, images.relpaths)
        if (~keep).any():
            log.warning(
                "folder: skipping %d unreadable image(s) of %d", int((~keep).sum()), len(keep)
            )
        index = (
            random_80_10_10(len(files), data_seed)
            if "all" in trees
            else named_splits(np.asarray(split_of), self.name)
        )
        pairs = PairSplit("all", self.task, images, ids, ids.copy(), class_names=class_names)
        return build_splits(
            self.name,
            self.task,
            pairs,
            index,
            keep={UNREADABLE_IMAGE: keep},
            class_names=class_names,
            has_ground_truth=False,
        )
