"""Embedded splits: what the scorers consume (after data -> noise -> embedding).

Embeddings are L2-normalised here, once, and validated (finite, non-zero norm), so every scorer can assume
unit vectors. ``reference_index`` says which train rows form the reference set (the kNN database).
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from lemon.core.errors import LemonError
from lemon.core.npy import check_rows, is_mapped, take_rows

if TYPE_CHECKING:  # importing lemon.data here would load every dataset, which import this module
    from lemon.data.base import Dropped, ImageSource


def normalize_rows(x: np.ndarray, what: str) -> np.ndarray:
    """float32 copy of ``x`` with unit-norm rows; NaN/inf or zero rows are a clear error."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise LemonError(f"{what} must be a 2-D array (n, d), got shape {x.shape}.")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise LemonError(
            f"{what} has NaN/inf values in {int(bad.sum())} rows (first: row "
            f"{int(np.flatnonzero(bad)[0])}); drop or re-embed those samples."
        )
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    zero = norms == 0
    if zero.any():
        raise LemonError(
            f"{what} has {int(zero.sum())} zero-norm rows (first: row "
            f"{int(np.flatnonzero(zero)[0])}); a zero vector has no direction to compare."
        )
    return (x / norms[:, None]).astype(np.float32)


def unit_rows(x: np.ndarray, what: str, normalized: bool = False) -> np.ndarray:
    """Unit-norm float32 rows of ``x``, copied only when needed.

    A memory-mapped array whose rows are already unit-norm (what the embedding cache and the large synthetic
    store hold) is checked in blocks and kept mapped: a split of millions of pairs is never copied into
    memory. ``normalized``: the rows come from such an array (a block being streamed): float32 rows are used
    as they are, so a block holds exactly the values of the whole split.
    """
    if normalized and np.asarray(x).dtype == np.float32:
        return np.asarray(x)
    if is_mapped(x) and check_rows(x, what):
        return x
    return normalize_rows(x, what)


@dataclass
class SplitFeatures:
    """One embedded split.

    img, txt : (n, d) float32, unit rows (image and observed-text embeddings of each pair)
    texts : (n,) object, the observed text embedded (prompt or caption; used by the discrete text metric)
    observed : (n,) observed class id (classification) or caption
    clean : (n,) clean class id / caption, or None without ground truth
    is_mislabel : (n,) bool, or None without ground truth
    pred_probs : (n, C) class probabilities brought by the user (optional)
    ids : (n,) row index of each sample within its split (kept through subsetting)
    image_refs : (n,) the image of each pair exactly as its source gives it (a table cell, a path)
    reference_row : (n,) own row in the reference set, -1 if absent
    source_rows : (n,) row of each pair in its source (the user's table), or None
    images : the pairs' images (an ImageSource, row-aligned), for scorers that run a model on them;
        None for embeddings-only data
    fold : (n,) which fold model embedded each row (out-of-fold scoring), or None for one model
    normalized : img and txt rows are unit-norm already (a block of a stored split; see :func:`unit_rows`)

    For large splits img and txt may be read-only memory maps of unit rows (float32, or float16 storage):
    :meth:`block` reads a range of rows into memory as float32.
    """

    split: str
    img: np.ndarray
    txt: np.ndarray
    texts: np.ndarray
    observed: np.ndarray
    clean: np.ndarray | None = None
    is_mislabel: np.ndarray | None = None
    pred_probs: np.ndarray | None = None
    # None: np.arange(n), set by __post_init__ (a field cannot be typed "optional at init only")
    ids: np.ndarray = None  # type: ignore[assignment]
    image_refs: Sequence[str] | None = None
    reference_row: np.ndarray | None = None
    source_rows: np.ndarray | None = None
    images: ImageSource | None = None
    fold: np.ndarray | None = None
    normalized: bool = field(default=False, kw_only=True, repr=False)

    def __post_init__(self) -> None:
        n = len(self.img)
        arrays: dict[str, Sized] = {"txt": self.txt, "texts": self.texts, "observed": self.observed}
        arrays.update(
            {
                k: v
                for k, v in (
                    ("clean", self.clean),
                    ("is_mislabel", self.is_mislabel),
                    ("pred_probs", self.pred_probs),
                )
                if v is not None
            }
        )
        if self.images is not None:
            arrays["images"] = self.images
        for name, arr in arrays.items():
            if len(arr) != n:
                raise LemonError(
                    f"split '{self.split}': image embeddings and {name} must have the same "
                    f"length, got {n} and {len(arr)}."
                )
        if (
            np.ndim(self.img) != 2
            or np.ndim(self.txt) != 2
            or self.img.shape[1] != self.txt.shape[1]
        ):
            raise LemonError(
                f"split '{self.split}': image and text embeddings must be (n, d) arrays of the "
                f"same dimension d, got shapes {np.shape(self.img)} and {np.shape(self.txt)}."
            )
        self.img = unit_rows(self.img, f"{self.split} image embeddings", self.normalized)
        self.txt = unit_rows(self.txt, f"{self.split} text embeddings", self.normalized)
        self.texts = np.asarray(self.texts, dtype=object)
        if self.is_mislabel is not None:
            self.is_mislabel = np.asarray(self.is_mislabel).astype(bool)
        if self.ids is None:
            self.ids = np.arange(n)

    def __len__(self) -> int:
        return len(self.img)

    @property
    def has_labels(self) -> bool:
        return self.is_mislabel is not None

    def block(self, start: int, stop: int) -> SplitFeatures:
        """Rows ``[start, stop)`` in memory, with every per-row field; embeddings exactly as the split holds
        them (float16 storage is widened and normalised), so streaming block by block scores each row as
        the whole split would."""
        rows = slice(start, stop)

        def cut(a):
            return None if a is None else a[rows]

        return SplitFeatures(
            self.split,
            np.array(self.img[rows]),
            np.array(self.txt[rows]),
            self.texts[rows],
            self.observed[rows],
            cut(self.clean),
            cut(self.is_mislabel),
            cut(self.pred_probs),
            self.ids[rows],
            None if self.image_refs is None else list(self.image_refs[rows]),
            cut(self.reference_row),
            cut(self.source_rows),
            None if self.images is None else self.images.subset(np.arange(start, stop)),
            cut(self.fold),
            normalized=True,
        )

    def subset(self, index: np.ndarray, with_images: bool = True) -> SplitFeatures:
        """Rows ``index`` of this split (``with_images=False``: leave the images out, e.g. the kNN
        reference set, which never needs them and would copy in-memory pixels)."""
        index = np.asarray(index)

        def pick(a):
            return None if a is None else np.asarray(a)[index]

        refs = None if self.image_refs is None else [self.image_refs[i] for i in index]
        images = None
        if with_images and self.images is not None:
            images = self.images.subset(index)
        return SplitFeatures(
            self.split,
            take_rows(self.img, index),
            take_rows(self.txt, index),
            self.texts[index],
            self.observed[index],
            pick(self.clean),
            pick(self.is_mislabel),
            pick(self.pred_probs),
            self.ids[index],
            refs,
            pick(self.reference_row),
            pick(self.source_rows),
            images,
            pick(self.fold),
        )


@dataclass
class Provenance:
    """Where a run's features came from (args.json records it).

    source : the dataset or file they were read from
    embedder, embedder_id : the model that embedded them (None for precomputed embeddings)
    cache_root, cache_hits, cache_misses : the embedding cache used, and what it held
    dropped : per split (and 'before splitting'), the pairs not scored, by reason
    seen_by_model : per split, how many pairs have an image the embedding model was trained on
    """

    source: str = ""
    embedder: str | None = None
    embedder_id: str | None = None
    cache_root: str | None = None
    cache_hits: int = 0
    cache_misses: int = 0
    dropped: dict[str, Dropped] = field(default_factory=dict)
    seen_by_model: dict[str, int] = field(default_factory=dict)

    def dropped_counts(self) -> dict[str, dict[str, int]]:
        return {s: d.counts() for s, d in self.dropped.items()}

    def dropped_frame(self):  # -> pandas.DataFrame
        """One row per pair not scored: ``row`` (in its source), ``image`` (as given), ``split``, ``reason``."""
        import pandas as pd

        frames = [
            pd.DataFrame(
                {"row": d.rows, "image": d.images, "split": split, "reason": d.reasons},
                columns=["row", "image", "split", "reason"],
            )
            for split, d in self.dropped.items()
        ]
        empty = pd.DataFrame(columns=["row", "image", "split", "reason"])
        return pd.concat([empty, *frames], ignore_index=True) if frames else empty


@dataclass
class Features:
    """All embedded splits of a run plus dataset-level facts.

    task : 'classification' | 'captioning'
    label_prompt_txt : (C, d) unit embeddings of every class prompt (classification), or None
    class_names : names of the C classes, or None
    reference_index : rows of ``splits['train']`` forming the kNN reference set (all rows by default)
    provenance : what the features were computed from, and what was dropped on the way
    fold_train : out-of-fold scoring only: the train split as embedded by each of the K fold models. A row
        of fold f (``SplitFeatures.fold``) is embedded by model f and meets the reference set as model f
        embeds it, so its distances never mix two models' spaces; :attr:`reference` stacks the K copies.
    """

    task: str
    splits: dict[str, SplitFeatures]
    label_prompt_txt: np.ndarray | None = None
    class_names: Sequence[str] | None = None
    # None: every train row, set by __post_init__ (a field cannot be typed "optional at init only")
    reference_index: np.ndarray = None  # type: ignore[assignment]
    provenance: Provenance = field(default_factory=Provenance)
    fold_train: list[SplitFeatures] | None = None

    def __post_init__(self) -> None:
        if "train" not in self.splits:
            raise LemonError(
                "The features need a 'train' split: it is the reference set of the kNN search."
            )
        if self.label_prompt_txt is not None:
            self.label_prompt_txt = normalize_rows(self.label_prompt_txt, "label_prompt_txt")
        if self.reference_index is None:
            self.reference_index = np.arange(len(self.splits["train"]))

    def self_rows(self, split: str) -> np.ndarray | None:
        """(n,) reference row of each sample of ``split`` (to exclude from its own neighbours), -1 if none."""
        if split == "train":
            rows = np.full(len(self.splits["train"]), -1, dtype=np.int64)
            rows[self.reference_index] = np.arange(len(self.reference_index))
            return rows
        return self.splits[split].reference_row

    @property
    def reference(self) -> SplitFeatures:
        """The reference set (train rows in ``reference_index``); with fold models, its K copies stacked
        (row ``f * R + r`` is reference row r as fold model f embeds it, R = ``len(reference_index)``)."""
        if self.fold_train is None:
            return self.splits["train"].subset(self.reference_index, with_images=False)
        copies = [view.subset(self.reference_index, with_images=False) for view in self.fold_train]

        def stack(name: str):
            parts = [getattr(c, name) for c in copies]
            return None if parts[0] is None else np.concatenate(parts)

        return SplitFeatures(
            "train",
            stack("img"),
            stack("txt"),
            stack("texts"),
            stack("observed"),
            stack("clean"),
            stack("is_mislabel"),
            ids=stack("ids"),
            fold=np.repeat(np.arange(len(copies)), len(self.reference_index)),
        )

    def reference_rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows of the reference set named by neighbour ids (with fold models: the stacked copy's row)."""
        return idx if self.fold_train is None else idx % len(self.reference_index)

    @property
    def has_ground_truth(self) -> bool:
        return all(s.has_labels for s in self.splits.values())

    def cap_reference(self, limit: int, rng: np.random.Generator) -> None:
        """Cap the reference set at ``limit`` train rows by a seeded random subset."""
        n = len(self.splits["train"])
        if n > limit:
            self.reference_index = np.sort(rng.choice(n, limit, replace=False))
