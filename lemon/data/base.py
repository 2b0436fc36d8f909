"""The data model every loader produces and every later stage consumes (SPEC §1).

A :class:`PairSplit` holds one split of N image–text pairs: image references (an :class:`ImageSource`),
clean and observed labels (class ids for classification, caption strings for captioning) and, derived from
them, the text each pair shows the model and ``is_mislabel`` (observed != clean *as strings*).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

TASKS = ("classification", "captioning")
SPLITS = ("train", "val", "test")
DEFAULT_PROMPT = "A photo of a "


@runtime_checkable
class ImageSource(Protocol):
    """Random access to a split's images as PIL images, with a stable string id per image.

    ``ids`` name the images (e.g. ``"cifar10/train/00042"`` or a file path relative to the data root) and
    ``fingerprint()`` digests what they currently hold (pixels, or each file's size and modification time):
    the embedding cache is keyed by both, so an image replaced or repaired under the same id is embedded
    again, never served stale. Implementations must be picklable so a DataLoader with workers can use them.
    """

    ids: Sequence[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int): ...  # -> PIL.Image.Image

    def fingerprint(self) -> str: ...


def digest(*parts: bytes | str) -> str:
    """Short blake2b hex digest of byte/str parts (each length-prefixed, so parts cannot run together)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_stamps(paths: Sequence[str | os.PathLike]) -> str:
    """Digest of each file's size and modification time (one ``stat`` per file; 'missing' when absent)."""
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
            stamps.append(f"{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stamps.append("missing")
    return digest("\n".join(stamps))


@dataclass
class FileImages:
    """Images stored as files; ``ids`` are the paths relative to ``root``."""

    root: Path
    relpaths: Sequence[str]

    @property
    def ids(self) -> Sequence[str]:
        return self.relpaths

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(Path(self.root) / self.relpaths[i]) as img:
            return img.convert("RGB")

    def fingerprint(self) -> str:
        return file_stamps([os.path.join(self.root, p) for p in self.relpaths])

    def subset(self, index: np.ndarray) -> FileImages:
        return FileImages(self.root, [self.relpaths[i] for i in np.asarray(index)])


@dataclass
class ArrayImages:
    """Images held in memory as a uint8 array (N, H, W, 3), e.g. CIFAR; ``ids`` given by the loader."""

    pixels: np.ndarray
    ids: Sequence[str]

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        from PIL import Image

        return Image.fromarray(self.pixels[i])

    def fingerprint(self) -> str:
        pixels = np.ascontiguousarray(self.pixels)
        return digest(str(pixels.shape), str(pixels.dtype), memoryview(pixels).cast("B"))

    def subset(self, index: np.ndarray) -> ArrayImages:
        index = np.asarray(index)
        return ArrayImages(self.pixels[index], [self.ids[i] for i in index])


@dataclass
class PairSplit:
    """One split of image–text pairs.

    Attributes
    ----------
    split : 'train' | 'val' | 'test'
    task : 'classification' | 'captioning'
    images : ImageSource of length N (None when only embeddings exist)
    clean : (N,) int class ids (classification) or object array of clean captions (captioning)
    observed : (N,) same dtype as ``clean``: what the dataset shows (possibly noisy)
    class_names : class id -> name (classification only)
    categories : per-sample tuple of category names (COCO objects, genres, findings) for ``cat`` noise
    meta : free-form per-split information (e.g. counts of skipped unreadable images)
    """

    split: str
    task: str
    images: ImageSource | None
    clean: np.ndarray
    observed: np.ndarray
    class_names: Sequence[str] | None = None
    categories: Sequence[tuple[str, ...]] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clean = np.asarray(self.clean)
        self.observed = np.asarray(self.observed)
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}.")
        n = len(self.clean)
        if len(self.observed) != n or (self.images is not None and len(self.images) != n):
            raise ValueError(
                f"split '{self.split}': images, clean and observed must have the same length, got "
                f"{None if self.images is None else len(self.images)}, {n} and {len(self.observed)}."
            )
        if self.task == "classification" and self.class_names is None:
            raise ValueError(f"split '{self.split}': a classification split needs class_names.")

    def __len__(self) -> int:
        return len(self.clean)

    def _as_text(self, values: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return np.asarray(self.class_names, dtype=object)[values.astype(np.int64)]
        return values.astype(object)

    @property
    def clean_text(self) -> np.ndarray:
        """Clean class name or caption per sample (object array of str)."""
        return self._as_text(self.clean)

    @property
    def observed_text(self) -> np.ndarray:
        """Observed class name or caption per sample (object array of str)."""
        return self._as_text(self.observed)

    @property
    def is_mislabel(self) -> np.ndarray:
        """(N,) bool: observed differs from clean *as strings* (SPEC §1)."""
        return self.clean_text != self.observed_text

    def prompts(self, prefix: str = DEFAULT_PROMPT) -> list[str]:
        """Texts the model embeds: ``prefix + class name`` (classification) or the observed caption."""
        if self.task == "classification":
            return [prefix + name for name in self.observed_text]
        return [str(t) for t in self.observed_text]

    def with_observed(self, observed: np.ndarray, **meta) -> PairSplit:
        """A copy with new observed labels (what noise injectors return)."""
        return dataclasses.replace(self, observed=np.asarray(observed), meta={**self.meta, **meta})

    def subset(self, index: np.ndarray) -> PairSplit:
        """Rows ``index`` of this split (images, labels, categories and per-row ``meta`` arrays alike)."""
        index = np.asarray(index, dtype=np.int64)
        images = None if self.images is None else self.images.subset(index)  # type: ignore[attr-defined]
        cats = None if self.categories is None else [self.categories[i] for i in index]
        meta = {
            k: (v[index] if isinstance(v, np.ndarray) and v.ndim and len(v) == len(self) else v)
            for k, v in self.meta.items()
        }
        return dataclasses.replace(
            self,
            images=images,
            clean=self.clean[index],
            observed=self.observed[index],
            categories=cats,
            meta=meta,
        )


@dataclass
class DatasetSplits:
    """The three splits of a dataset plus dataset-level facts."""

    name: str
    task: str
    splits: dict[str, PairSplit]
    class_names: Sequence[str] | None = None
    has_ground_truth: bool = True

    def __getitem__(self, split: str) -> PairSplit:
        return self.splits[split]


class Dataset:
    """Base class of registered datasets (contract enforced at class creation).

    Subclasses set ``name``, ``task``, ``noise_types`` (names of compatible noises; first = default),
    ``default_embedder`` (registry name or None for the global default), ``default_knn_k`` (the k used
    when ``--knn_k`` is not given; None for the original's 5) and implement
    ``check_exists(root)`` (raise :class:`lemon.errors.DatasetNotFoundError` naming the missing path and the
    DataSources.md section) and ``load(root, data_seed) -> DatasetSplits`` (clean splits, no noise yet
    except dataset-intrinsic labels).
    """

    name: ClassVar[str]
    task: ClassVar[str]
    noise_types: ClassVar[tuple[str, ...]]
    default_embedder: ClassVar[str | None] = None
    default_knn_k: ClassVar[int | None] = None

    _required = ("name", "task", "noise_types")

    def __init_subclass__(cls, abstract: bool = False, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        missing = [a for a in cls._required if not hasattr(cls, a)]
        if missing:
            raise TypeError(f"Dataset class {cls.__name__} must define {', '.join(missing)}.")
        if cls.task not in (*TASKS, "any"):
            raise TypeError(f"Dataset class {cls.__name__}: task must be one of {TASKS} or 'any'.")

    #: True for sources that yield embeddings directly (``load_features``) instead of images and texts
    precomputed: ClassVar[bool] = False

    def check_exists(self, root: Path) -> None:
        raise NotImplementedError

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        raise NotImplementedError

    def load_features(self, cfg):  # -> lemon.features.Features, for precomputed sources only
        raise NotImplementedError
