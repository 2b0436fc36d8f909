"""Classification datasets: CIFAR-10/100 (+ CIFAR-N human labels) and the Red web-noise sets.

- ``cifar10`` / ``cifar100``: torchvision's CIFAR python pickles; the official 50k train images are split
  80/10/10 by ``data_seed``. Clean labels are the official ones; ``real`` noise takes the CIFAR-N
  human labels (``CIFAR-10_human.pt`` ``worse_label`` / ``CIFAR-100_human.pt`` ``noisy_label``).
- ``mini_imagenet`` / ``stanford_cars``: Google's Controlled Noisy Web Labels "Red" sets: web images with
  the label they were found under and an ``is_clean`` flag from human raters. The observed label is the web
  label; the true class of a wrong label is unknown, so its clean label is a placeholder (the next class id)
  that only serves ``is_mislabel = not is_clean``; ``clean_unknown`` marks those rows. Split 50/25/25
  stratified by ``is_clean``.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.base import (
    NOT_DOWNLOADED,
    UNREADABLE_IMAGE,
    ArrayImages,
    Dataset,
    DatasetSplits,
    Dropped,
    FileImages,
    PairSplit,
)
from lemon.data.files import (
    IMAGE_SUFFIXES,
    keep_readable,
    not_found,
    read_json,
    read_metadata,
    require,
)
from lemon.data.registry import DATASETS
from lemon.data.splitting import build_splits, random_80_10_10, stratified_50_25_25

log = logging.getLogger(__name__)
CLASS_NAMES_DIR = Path(__file__).parent / "class_names"
CIFAR_N_URL = "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/"


def packaged_class_names(name: str) -> list[str]:
    """Class names shipped with lemon (``lemon/data/class_names/<name>.txt``, one per line, id order)."""
    return (CLASS_NAMES_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()


def read_cifar_n(path: Path, key: str, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(clean_label, human label ``key``) arrays from a CIFAR-N ``*_human.pt`` file.

    ``name`` (the dataset, for the DataSources.md section of errors) defaults from the file name.
    """
    import torch

    name = name or ("cifar100" if "100" in Path(path).name else "cifar10")
    # a dict of numpy arrays, as published
    labels = read_metadata(
        name, path, lambda p: torch.load(p, weights_only=False), "CIFAR-N label file"
    )
    if not isinstance(labels, dict) or "clean_label" not in labels or key not in labels:
        found = sorted(labels) if isinstance(labels, dict) else type(labels).__name__
        raise LemonError(
            f"{path} is not a CIFAR-N label file: expected keys 'clean_label' and '{key}', "
            f"found {found}."
        )
    return np.asarray(labels["clean_label"], dtype=np.int64), np.asarray(
        labels[key], dtype=np.int64
    )


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        out = pickle.load(f, encoding="latin1")  # the official CIFAR python format
    if not isinstance(out, dict):
        raise TypeError(f"a pickled {type(out).__name__}, not a dict")
    return out


class _Cifar(Dataset, abstract=True):
    """CIFAR train set from torchvision's python pickles, split 80/10/10 by ``data_seed``."""

    task: ClassVar[str] = "classification"
    noise_types: ClassVar[tuple[str, ...]] = ("real", "symmetric", "asymmetric")
    folder: ClassVar[str]
    train_files: ClassVar[tuple[str, ...]]
    meta_file: ClassVar[str]
    names_key: ClassVar[str]
    label_key: ClassVar[str]
    human_file: ClassVar[str]
    human_key: ClassVar[str]
    torchvision_class: ClassVar[str]

    def _dir(self, root: Path) -> Path:
        return Path(root) / self.name / self.folder

    def check_exists(self, root: Path) -> None:
        d = self._dir(root)
        require(self.name, d, *(d / f for f in (*self.train_files, self.meta_file)))

    def _read_batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        batch = _unpickle(path)
        pixels = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3072)
        labels = np.asarray(batch[self.label_key], dtype=np.int64)
        if len(pixels) != len(labels):
            raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
        return pixels, labels

    def _read_names(self, path: Path) -> list[str]:
        return [str(n) for n in _unpickle(path)[self.names_key]]

    def human_label_paths(self, root: Path) -> list[Path]:
        """Where the CIFAR-N file may sit: beside the CIFAR folder, or in a shared ``cifar-n`` folder."""
        return [Path(root) / self.name / self.human_file, Path(root) / "cifar-n" / self.human_file]

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        self.check_exists(root)
        d = self._dir(root)
        batch_format = f"a python pickle of {{'data', '{self.label_key}', ...}}"
        batches = [
            read_metadata(self.name, d / f, self._read_batch, "CIFAR batch", batch_format)
            for f in self.train_files
        ]
        pixels = (
            np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        )
        labels = np.concatenate([b[1] for b in batches])
        class_names = read_metadata(
            self.name,
            d / self.meta_file,
            self._read_names,
            "CIFAR meta file",
            f"a python pickle of {{'{self.names_key}', ...}}",
        )
        ids = [f"{self.name}/train/{i:05d}" for i in range(len(labels))]
        pairs = PairSplit(
            "all",
            self.task,
            ArrayImages(np.ascontiguousarray(pixels), ids),
            labels,
            labels.copy(),
            class_names=class_names,
            **self._human_labels(root, labels),
        )
        return build_splits(
            self.name,
            self.task,
            pairs,
            random_80_10_10(len(labels), data_seed, self.name),
            class_names=class_names,
        )

    def download(self, root: Path) -> list[Path]:
        """Fetch the CIFAR pickles (torchvision) and the CIFAR-N file (GitHub) into ``root/<name>``."""
        import urllib.request

        import torchvision

        target = Path(root) / self.name
        getattr(torchvision.datasets, self.torchvision_class)(
            str(target), train=True, download=True
        )
        human = target / self.human_file
        if not human.is_file():
            target.mkdir(parents=True, exist_ok=True)
            urllib.request.urlretrieve(CIFAR_N_URL + self.human_file, human.with_suffix(".part"))
            human.with_suffix(".part").replace(human)
        return [self._dir(root), human]

    def _human_labels(self, root: Path, labels: np.ndarray) -> dict:
        """What ``real`` noise needs: the CIFAR-N labels per row, or why they are missing."""
        found = [p for p in self.human_label_paths(root) if p.is_file()]
        if not found:
            expected = " or ".join(str(p) for p in self.human_label_paths(root))
            return {
                "real_missing": f"CIFAR-N labels for '{self.name}' not found: expected {expected}. "
                f"See DataSources.md#{self.name}."
            }
        clean, human = read_cifar_n(found[0], self.human_key, self.name)
        if len(clean) != len(labels):
            raise LemonError(
                f"{found[0]}: {len(clean)} labels for {len(labels)} CIFAR train images; use the "
                f"CIFAR-N file of '{self.name}' and the official train set."
            )
        if (clean != labels).any():
            raise LemonError(
                f"{found[0]}: its clean_label disagrees with the CIFAR train labels in "
                f"{int((clean != labels).sum())} places; use the CIFAR-N file of '{self.name}' and "
                f"the official train set."
            )
        return {"real_observed": human, "real_source": str(found[0])}


@DATASETS.register("cifar10")
class Cifar10(_Cifar):
    folder: ClassVar[str] = "cifar-10-batches-py"
    train_files: ClassVar[tuple[str, ...]] = tuple(f"data_batch_{i}" for i in range(1, 6))
    meta_file: ClassVar[str] = "batches.meta"
    names_key: ClassVar[str] = "label_names"
    label_key: ClassVar[str] = "labels"
    human_file: ClassVar[str] = "CIFAR-10_human.pt"
    human_key: ClassVar[str] = "worse_label"
    torchvision_class: ClassVar[str] = "CIFAR10"


@DATASETS.register("cifar100")
class Cifar100(_Cifar):
    folder: ClassVar[str] = "cifar-100-python"
    train_files: ClassVar[tuple[str, ...]] = ("train",)
    meta_file: ClassVar[str] = "meta"
    names_key: ClassVar[str] = "fine_label_names"
    label_key: ClassVar[str] = "fine_labels"
    human_file: ClassVar[str] = "CIFAR-100_human.pt"
    human_key: ClassVar[str] = "noisy_label"
    torchvision_class: ClassVar[str] = "CIFAR100"


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "1.0")


def _read_red_annotations(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image ids, web labels, is_clean flags) of a Red annotation JSON."""
    entries = [e[0] if isinstance(e, list) else e for e in read_json(path)["data"]]
    ids = [str(e["image/id"]) for e in entries]
    web_label = np.asarray([int(e["image/class/label"]) for e in entries], dtype=np.int64)
    return (
        ids,
        web_label,
        np.asarray([_flag(e["image/class/label/is_clean"]) for e in entries], dtype=bool),
    )


def index_images(folder: Path, base: Path) -> dict[str, str]:
    """File stem -> path relative to ``base`` for every image below ``folder`` (first one wins)."""
    stems: dict[str, str] = {}
    for dirpath, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext.lower() in IMAGE_SUFFIXES and stem not in stems:
                stems[stem] = os.path.relpath(os.path.join(dirpath, f), base)
    return stems


class _RedWeb(Dataset, abstract=True):
    """A Red (real web noise) set: annotation JSON + images downloaded as ``images/<image/id>.jpg``."""

    task: ClassVar[str] = "classification"
    noise_types: ClassVar[tuple[str, ...]] = ("real",)
    annotations: ClassVar[str]

    def check_exists(self, root: Path) -> None:
        d = Path(root) / self.name
        require(self.name, d / self.annotations, d / "images")

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        self.check_exists(root)
        d = Path(root) / self.name
        ids, web_label, is_clean = read_metadata(
            self.name,
            d / self.annotations,
            _read_red_annotations,
            "Controlled Noisy Web Labels annotations",
            "{'data': [[{'image/id', 'image/class/label', 'image/class/label/is_clean', ...}], ...]}",
        )
        class_names = packaged_class_names(self.name)
        if len(web_label) and (web_label.min() < 0 or web_label.max() >= len(class_names)):
            raise LemonError(f"{d / self.annotations}: labels outside [0, {len(class_names)}).")
        stems = index_images(d / "images", Path(root))
        present = np.asarray([i in stems for i in ids], dtype=bool)
        if not present.any():
            raise not_found(
                self.name,
                d / "images" / f"{ids[0] if ids else '<image/id>'}.jpg",
                "no annotated image downloaded; expected e.g.",
            )
        # images never downloaded are dropped before splitting (the original's rule), and counted
        rows = np.flatnonzero(present)
        relpaths = [stems[ids[i]] for i in rows]
        readable, _ = keep_readable(self.name, Path(root), relpaths)
        observed, flags = web_label[rows], is_clean[rows]
        # the true label of a wrong web label is unknown: a placeholder that differs from it
        clean = np.where(flags, observed, (observed + 1) % len(class_names))
        pairs = PairSplit(
            "all",
            self.task,
            FileImages(Path(root), relpaths),
            clean,
            observed,
            class_names=class_names,
            source_rows=rows,
            clean_unknown=~flags,
            intrinsic_noise=True,
            dropped=Dropped().add(
                NOT_DOWNLOADED,
                np.flatnonzero(~present),
                [str(ids[i]) for i in np.flatnonzero(~present)],
            ),
        )
        return build_splits(
            self.name,
            self.task,
            pairs,
            stratified_50_25_25(flags, data_seed),
            keep={UNREADABLE_IMAGE: readable},
            class_names=class_names,
        )


@DATASETS.register("mini_imagenet")
class RedMiniImageNet(_RedWeb):
    annotations: ClassVar[str] = "mini-imagenet-annotations.json"


@DATASETS.register("stanford_cars")
class RedStanfordCars(_RedWeb):
    annotations: ClassVar[str] = "stanford-cars-annotations.json"
