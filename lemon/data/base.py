"""The data model every loader produces and every later stage consumes.

A :class:`PairSplit` holds one split of N image–text pairs: image references (an :class:`ImageSource`),
clean and observed labels (class ids for classification, caption strings for captioning) and, derived from
them, the text each pair shows the model and ``is_mislabel`` (observed != clean *as strings*).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from lemon.data.images import content_id, open_rgb

if TYPE_CHECKING:
    from lemon.data.features import Features

TASKS = ("classification", "captioning")
#: how the embedding cache recognises image files: by size + mtime (fast) or by a hash of their bytes
IMAGE_IDENTITIES = ("stat", "content")
SPLITS = ("train", "val", "test")
DEFAULT_PROMPT = "A photo of a "


@runtime_checkable
class ImageSource(Protocol):
    """Random access to a split's images as PIL images, with a stable string id per image.

    ``ids`` name the images (e.g. ``"cifar10/train/00042"`` or a file path relative to the data root) and
    ``fingerprint(content)`` digests what they currently hold: pixels or bytes held in memory; for files,
    each file's size and modification time ('stat', one ``stat`` per file), or with ``content=True`` a hash
    of each file's bytes (reads every file; catches a file replaced by another of the same size whose
    mtime was preserved, as ``cp -p`` and ``rsync -a`` do). The embedding cache is keyed by both, so an
    image replaced or repaired under the same id is embedded again, never served stale. Implementations
    must be picklable so a DataLoader with workers can use them.
    """

    @property
    def ids(self) -> Sequence[str]: ...  # an attribute or a property

    def __len__(self) -> int: ...

    def __getitem__(self, i: int): ...  # -> PIL.Image.Image

    def fingerprint(self, content: bool = False) -> str: ...

    def subset(self, index: np.ndarray) -> ImageSource: ...  # rows ``index``, in that order


def digest(*parts: bytes | memoryview | str) -> str:
    """Short blake2b hex digest of byte/str parts (each length-prefixed, so parts cannot run together)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_content_ids(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """(n,) uint64 :func:`content_id` of each file's bytes (threaded, I/O bound); 0 for unreadable files."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path) -> int:
        try:
            with open(path, "rb") as f:
                return content_id(f.read())
        except OSError:
            return 0

    if not len(paths):
        return np.zeros(0, dtype=np.uint64)
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 4)) as pool:
        return np.fromiter(pool.map(one, paths, chunksize=256), dtype=np.uint64, count=len(paths))


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


def file_digests(paths: Sequence[str | os.PathLike]) -> str:
    """Digest of each file's bytes (every file read in full; 'missing' when absent)."""
    parts = []
    for path in paths:
        try:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            parts.append(h.hexdigest())
        except OSError:
            parts.append("missing")
    return digest("content", "\n".join(parts))


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
        return open_rgb(Path(self.root) / self.relpaths[i])

    def fingerprint(self, content: bool = False) -> str:
        paths = [os.path.join(self.root, p) for p in self.relpaths]
        return file_digests(paths) if content else file_stamps(paths)

    def identities(self) -> np.ndarray:
        """(n,) uint64 content id of each file (:func:`content_id`)."""
        return file_content_ids([os.path.join(self.root, p) for p in self.relpaths])

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

    def fingerprint(self, content: bool = False) -> str:
        pixels = np.ascontiguousarray(self.pixels)
        return digest(str(pixels.shape), str(pixels.dtype), pixels.data.cast("B"))

    def identities(self) -> np.ndarray:
        """(n,) uint64 content id of each image's pixels (:func:`content_id`)."""
        pixels = np.ascontiguousarray(self.pixels).reshape(len(self.pixels), -1)
        return np.fromiter(
            (content_id(row.data.cast("B")) for row in pixels),
            dtype=np.uint64,
            count=len(pixels),
        )

    def subset(self, index: np.ndarray) -> ArrayImages:
        index = np.asarray(index)
        return ArrayImages(self.pixels[index], [self.ids[i] for i in index])


@dataclass(frozen=True)
class Dropped:
    """Pairs of the source that a split does not score, each with its reason (counted, never lost).

    rows : (m,) int64 row of each pair in its source (the user's table, the dataset's file), -1 if none
    images : (m,) object, the image as the source gives it ('' when unknown)
    reasons : (m,) object, why it is not scored ('unreadable image', 'empty text', ...)
    """

    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    images: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    reasons: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))

    def __len__(self) -> int:
        return len(self.rows)

    def add(
        self,
        reason: str,
        rows: Sequence[int] | np.ndarray,
        images: Sequence[str] | np.ndarray | None = None,
    ) -> Dropped:
        """These pairs and the old ones (a new record; ``images`` default to '')."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        imgs = (
            np.full(len(rows), "", dtype=object)
            if images is None
            else np.asarray(images, dtype=object)
        )
        return Dropped(
            np.concatenate([self.rows, rows]),
            np.concatenate([self.images, imgs]),
            np.concatenate([self.reasons, np.full(len(rows), reason, dtype=object)]),
        )

    def count(self, reason: str) -> int:
        return int(np.sum(self.reasons == reason))

    def counts(self) -> dict[str, int]:
        """Pairs per reason, in the order reasons first occur."""
        names, first, n = np.unique(self.reasons.astype(str), return_index=True, return_counts=True)
        order = np.argsort(first)
        return {str(names[i]): int(n[i]) for i in order}


#: the reasons the loaders and the embedding stage use
UNREADABLE_IMAGE = "unreadable image"  # the file exists but is no image PIL can read (or damaged)
UNDECODABLE_IMAGE = "undecodable image"  # its header is fine, its pixels are not (a truncated JPEG)
MISSING_IMAGE = "missing image"  # no file at the path given
TOO_LARGE_IMAGE = "image too large"  # more pixels than --max_image_pixels
UNSUPPORTED_IMAGE = "unsupported image format"  # HEIC/AVIF without their PIL plugin
NOT_AN_IMAGE = "not an image file"  # a file in an image folder that is no image (notes.txt)
NO_CLASS_FOLDER = "not in a class folder"  # an image directly under an ImageFolder root
HIDDEN_FILE = "hidden file"  # under a hidden folder (.ipynb_checkpoints, .git) or named .*
URL_IMAGE = "URL (not downloaded)"  # an http://, s3://, gs:// ... image reference
CONFLICTING_LABEL = "conflicting label"  # --conflicting_labels first/drop
EMPTY_TEXT = "empty text"
NOT_DOWNLOADED = "not downloaded"
NO_IMAGE = "no image"  # the row names no image (an empty cell)
NO_LABEL = "no label"  # a classification row without an observed label
NO_CLEAN = "no clean value"  # the clean column is empty on this row
DUPLICATE = "duplicate"  # the same image with the same text as an earlier row (scored once, there)


def image_identities(images: ImageSource) -> np.ndarray:
    """(n,) uint64 content id of each image of ``images`` (:func:`content_id`; 0 when unreadable).

    Sources that know how (files, arrays, bytes, tar members) hash their encoded bytes; any other source
    falls back to its ids, which then only identify the image within that dataset.
    """
    if hasattr(images, "identities"):
        return images.identities()
    return np.fromiter(
        (content_id(str(i).encode()) for i in images.ids), dtype=np.uint64, count=len(images)
    )


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
    source_rows : (N,) row of each pair in its source (the user's table, the dataset's files)
    source_images : (N,) the image of each pair exactly as its source gives it (a table's cell, a path under
        the folder); None: the image ids
    identity : (N,) uint64 content id of each pair's image (:func:`content_id`); None: computed on demand
    real_observed : (N,) the data's own human labels, which ``real`` noise puts in place (CIFAR-N)
    real_missing : why ``real`` noise is unavailable (the message naming the missing file), or None
    real_source : the file ``real_observed`` was read from
    intrinsic_noise : True when ``observed`` already carries the data's own noise (a clean column)
    clean_unknown : (N,) bool, True where the clean label is only known to differ from the observed one
    categories_missing : why ``cat`` noise is unavailable (the message naming the missing file), or None
    noise, noise_level : the noise injected into ``observed`` (None before noise)
    n_swapped : how many captions a swap noise moved (a swap onto an identical caption is no error)
    dropped : the pairs of this split that are not scored, with their reasons
    """

    split: str
    task: str
    images: ImageSource | None
    clean: np.ndarray
    observed: np.ndarray
    class_names: Sequence[str] | None = None
    categories: Sequence[tuple[str, ...]] | None = None
    source_rows: np.ndarray | None = None
    source_images: np.ndarray | None = None
    identity: np.ndarray | None = None
    real_observed: np.ndarray | None = None
    real_missing: str | None = None
    real_source: str | None = None
    intrinsic_noise: bool = False
    clean_unknown: np.ndarray | None = None
    categories_missing: str | None = None
    noise: str | None = None
    noise_level: float | None = None
    n_swapped: int | None = None
    dropped: Dropped = field(default_factory=Dropped)

    #: per-row fields cut along by :meth:`subset`
    _PER_ROW = (
        "clean",
        "observed",
        "source_rows",
        "source_images",
        "identity",
        "real_observed",
        "clean_unknown",
    )

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
        if self.source_rows is None:
            self.source_rows = np.arange(n, dtype=np.int64)
        if self.task == "classification" and self.class_names is None:
            raise ValueError(f"split '{self.split}': a classification split needs class_names.")

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def classes(self) -> Sequence[str]:
        """``class_names``, which every classification split has (checked in ``__post_init__``)."""
        if self.class_names is None:
            raise ValueError(f"split '{self.split}' is no classification split: it has no classes.")
        return self.class_names

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
        """(N,) bool: observed differs from clean *as strings*."""
        return self.clean_text != self.observed_text

    def given_images(self) -> np.ndarray:
        """(N,) object: each pair's image as its source gives it (the image ids when it says no more)."""
        if self.source_images is not None:
            return np.asarray(self.source_images, dtype=object)
        if self.images is None:
            return np.full(len(self), "", dtype=object)
        return np.asarray([str(i) for i in self.images.ids], dtype=object)

    def identities(self) -> np.ndarray:
        """(N,) uint64 content id of each pair's image (computed once, from the images, when not known)."""
        if self.identity is None:
            if self.images is None:
                raise ValueError(f"split '{self.split}' has no images to identify.")
            self.identity = image_identities(self.images)
        return self.identity

    def prompts(self, prefix: str = DEFAULT_PROMPT) -> list[str]:
        """Texts the model embeds: ``prefix + class name`` (classification) or the observed caption."""
        if self.task == "classification":
            return [prefix + name for name in self.observed_text]
        return [str(t) for t in self.observed_text]

    def with_observed(self, observed: np.ndarray, **changes) -> PairSplit:
        """A copy with new observed labels (what noise injectors return) and other ``changes``."""
        return dataclasses.replace(self, observed=np.asarray(observed), **changes)

    def subset(self, index: np.ndarray) -> PairSplit:
        """Rows ``index`` of this split (images, labels, categories and every per-row field alike)."""
        index = np.asarray(index, dtype=np.int64)
        images = None if self.images is None else self.images.subset(index)
        cats = None if self.categories is None else [self.categories[i] for i in index]
        rows = {k: getattr(self, k)[index] for k in self._PER_ROW if getattr(self, k) is not None}
        return dataclasses.replace(self, images=images, categories=cats, **rows)

    def drop(self, keep: np.ndarray, reason: str) -> PairSplit:
        """The pairs where ``keep`` is True; the others are recorded in ``dropped`` with ``reason``."""
        keep = np.asarray(keep, dtype=bool)
        if keep.all():
            return self
        lost = np.flatnonzero(~keep)
        kept = self.subset(np.flatnonzero(keep))
        assert self.source_rows is not None  # set by __post_init__
        return dataclasses.replace(
            kept,
            dropped=self.dropped.add(reason, self.source_rows[lost], self.given_images()[lost]),
        )


@dataclass
class DatasetSplits:
    """The three splits of a dataset plus dataset-level facts.

    ``dropped``: pairs the dataset lost before it was split (e.g. images never downloaded).
    """

    name: str
    task: str
    splits: dict[str, PairSplit]
    class_names: Sequence[str] | None = None
    has_ground_truth: bool = True
    dropped: Dropped = field(default_factory=Dropped)

    def __getitem__(self, split: str) -> PairSplit:
        return self.splits[split]

    def dropped_counts(self) -> dict[str, dict[str, int]]:
        """Per split (and 'before splitting'), the pairs not scored by reason."""
        out = {s: p.dropped.counts() for s, p in self.splits.items()}
        if len(self.dropped):
            out["before splitting"] = self.dropped.counts()
        return out


#: the run_lemon flags that say where a dataset's files are and how to read them (the CLIP trainer and
#: ``python -m lemon.data check`` take them too); :meth:`DataOptions.from_flags` reads them
SOURCE_FLAGS = (
    "data_dir",
    "data_path",
    "image_root",
    "image_column",
    "text_column",
    "label_column",
    "clean_column",
    "class_names",
    "custom_cifar_prompt",
    "label_variants",
    "conflicting_labels",
    "max_image_pixels",
)


@dataclass(frozen=True)
class TableOptions:
    """Where a bring-your-own table or folder is, and which columns hold what."""

    path: str | None = None
    image_root: str | None = None
    image_column: str = "image"
    text_column: str = "caption"
    label_column: str = "label"
    clean_column: str | None = None
    class_names: str | None = None  # a text file, one class name a line (line i names label i)
    label_variants: str = "merge"  # labels differing in case/spacing/leading zeros: merge or keep
    conflicting_labels: str = "keep"  # one image with different labels: keep, first or drop
    max_image_pixels: int | None = None  # None: lemon.data.images.DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class DataOptions:
    """What a dataset needs to know of a run: where the data is, its seed, and source options.

    data_dir : the data root (None: $LEMON_DATA_DIR, else ~/.cache/lemon/data)
    data_seed : seed of the split rules (and of generated data)
    prompt : prefix of class names in the texts of classification data
    table : bring-your-own table / folder options
    embeddings : the .npz of ``--dataset embeddings``
    n_synthetic, noise_level : size and planted noise of ``--dataset synthetic``
    cache_dir : the cache root (None: $LEMON_CACHE_DIR, else ~/.cache/lemon/cache); large generated data
        is stored there
    """

    data_dir: str | None = None
    data_seed: int = 0
    prompt: str = DEFAULT_PROMPT
    table: TableOptions = field(default_factory=TableOptions)
    embeddings: str | None = None
    n_synthetic: int = 2000
    noise_level: float = 0.4
    cache_dir: str | None = None

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> DataOptions:
        """The options named by run_lemon flag ``values`` (absent flags take their defaults)."""
        get = values.get
        prompt = get("custom_cifar_prompt")
        noise_level = get("noise_level")
        table = TableOptions(
            path=get("data_path"),
            image_root=get("image_root"),
            image_column=get("image_column") or TableOptions.image_column,
            text_column=get("text_column", TableOptions.text_column),
            label_column=get("label_column", TableOptions.label_column),
            clean_column=get("clean_column"),
            class_names=get("class_names"),
            label_variants=get("label_variants") or TableOptions.label_variants,
            conflicting_labels=get("conflicting_labels") or TableOptions.conflicting_labels,
            max_image_pixels=get("max_image_pixels"),
        )
        return cls(
            data_dir=get("data_dir"),
            data_seed=get("data_seed", 0),
            prompt=DEFAULT_PROMPT if prompt is None else prompt,
            table=table,
            embeddings=get("embeddings"),
            n_synthetic=get("n_synthetic", 2000),
            noise_level=0.4 if noise_level is None else noise_level,
            cache_dir=get("cache_dir"),
        )


class Dataset:
    """Base class of registered datasets (contract enforced at class creation).

    Subclasses set ``name``, ``task``, ``noise_types`` (names of compatible noises; first = default),
    ``default_embedder`` (registry name or None for the global default), ``default_knn_k`` (the k used
    when ``--knn_k`` is not given; None for the original's 5) and implement
    ``check_exists(root)`` (raise :class:`lemon.core.errors.DatasetNotFoundError` naming the missing path and the
    DataSources.md section) and ``load(root, data_seed) -> DatasetSplits`` (clean splits, no noise yet
    except dataset-intrinsic labels). A dataset is built with the run's :class:`DataOptions`; those whose
    files come from the user (tables, folders, embeddings) read their place and columns there.
    """

    name: ClassVar[str]
    task: ClassVar[str]
    noise_types: ClassVar[tuple[str, ...]]
    default_embedder: ClassVar[str | None] = None
    default_knn_k: ClassVar[int | None] = None

    _required = ("task", "noise_types")

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

    def __init__(self, options: DataOptions | None = None) -> None:
        self.options = options or DataOptions()

    def check_exists(self, root: Path) -> None:
        raise NotImplementedError

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        raise NotImplementedError

    def source(self, root: Path) -> str:
        """Where the data is read from, for the log: the data root by default; a user's file, or
        'generated' for data made in memory, where the dataset says so."""
        return str(root)

    def load_features(self) -> Features:
        """The embedded splits, for precomputed sources only (``precomputed = True``)."""
        raise NotImplementedError
