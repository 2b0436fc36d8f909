"""Bring-your-own data: a table (``--dataset csv`` / ``parquet``) or an ImageFolder tree (``folder``).

A table has one row per image-text pair: an image column (a path, absolute or relative to ``--image_root``
which defaults to the table's folder; in parquet also encoded image bytes or a ``{'bytes': ...}`` struct)
and either a caption column (captioning) or a class-label column (classification). An optional clean
column holds the true caption/label: then the data carries its own noise and is evaluated as it is (noise
type ``real``); without it, score it with ``--real_dataset`` or inject noise to benchmark. An optional
``split`` column (train / val / test) fixes the splits; otherwise they are 80/10/10 over distinct images
(by a seeded order of their content ids, so a table and a folder of the same images split alike).
Image ids are absolute paths (or ``sha1:<digest>`` of image bytes), so two tables never share cache entries.
Every row is scored or recorded with its reason (``PairSplit.dropped``); each scored pair keeps its row
number (``source_rows``) and its image exactly as the table gives it (``source_images``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lemon.core.errors import DatasetNotFoundError, LemonError
from lemon.data.base import (
    DUPLICATE,
    EMPTY_TEXT,
    NO_CLEAN,
    NO_IMAGE,
    NO_LABEL,
    UNREADABLE_IMAGE,
    Dataset,
    DatasetSplits,
    Dropped,
    FileImages,
    PairSplit,
    TableOptions,
)
from lemon.data.files import (
    IMAGE_SUFFIXES,
    inspect_images,
    readable_bytes_mask,
    warn_unreadable,
)
from lemon.data.registry import DATASETS
from lemon.data.sources import BytesImages
from lemon.data.splitting import build_splits, identity_splits, named_splits

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
    """FileImages over absolute paths (ids = absolute paths without the filesystem anchor); relative
    ``paths`` start from ``base``."""
    absolute = [Path(os.path.abspath(p if os.path.isabs(p) else base / p)) for p in paths]
    anchor = Path(absolute[0].anchor) if absolute else Path("/")
    return FileImages(anchor, [str(p.relative_to(p.anchor)) for p in absolute])


def _blob(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
        return bytes(value["bytes"])
    return None


class RowDrops:
    """The first reason each row of a user's table (or folder listing) is not scored."""

    def __init__(self, n: int) -> None:
        self.code = np.zeros(n, dtype=np.int64)  # 0 = kept, i = reasons[i - 1]
        self.reasons: list[str] = []

    def mark(self, mask: np.ndarray, reason: str) -> None:
        """Rows where ``mask`` is True and no earlier reason applies are dropped for ``reason``."""
        hit = np.asarray(mask, dtype=bool) & (self.code == 0)
        if hit.any():
            self.reasons.append(reason)
            self.code[hit] = len(self.reasons)

    @property
    def kept(self) -> np.ndarray:
        return self.code == 0

    def record(self, images: np.ndarray) -> Dropped:
        """The dropped rows (row number, image as given, reason), reason by reason."""
        out = Dropped()
        for i, reason in enumerate(self.reasons, start=1):
            rows = np.flatnonzero(self.code == i)
            out = out.add(reason, rows, images[rows])
        return out

    def summary(self) -> str:
        counts = {r: int(np.sum(self.code == i)) for i, r in enumerate(self.reasons, start=1)}
        return ", ".join(f"{n} {r}" for r, n in counts.items()) or "none"


def _blank(values: Any) -> np.ndarray:
    """(n,) bool: empty cells (missing, or only whitespace)."""
    import pandas as pd

    col = pd.Series(values, dtype=object)
    # only text can be blank: image bytes are not text (str() of them fails under pandas' string dtype)
    text = col.map(lambda v: isinstance(v, str))
    blank = np.zeros(len(col), dtype=bool)
    blank[text.to_numpy(dtype=bool)] = col[text].astype(str).str.strip().to_numpy() == ""
    return col.isna().to_numpy() | blank


def _label_text(values: Any) -> np.ndarray:
    """Labels as stripped strings; whole-number floats (an integer column with gaps) lose their '.0'."""
    import pandas as pd

    col = pd.Series(values)
    if pd.api.types.is_float_dtype(col) and bool((col % 1 == 0).all()):
        col = col.astype(np.int64)
    return col.astype(str).str.strip().to_numpy(dtype=object)


def label_values_by_class(values: Any, names_file: str | None) -> dict[str, Any]:
    """Class name (as a run names the class: :func:`class_ids`) -> the first of ``values`` (a table's label
    column, as read) in that class: how a class named in a run's outputs is written back in the table's
    own terms. Empty cells are skipped."""
    import pandas as pd

    values = pd.Series(values).reset_index(drop=True)
    kept = values[~_blank(values)]
    if kept.empty:
        return {}
    text = _label_text(kept)
    original = kept.to_numpy(dtype=object)
    if not names_file:  # the classes are named by the labels themselves
        found = pd.Series(original).groupby(text).first()
        return {str(name): value for name, value in found.items()}
    names, ids = class_ids(text, names_file, "the table's labels", "")
    first = pd.Series(np.arange(len(ids))).groupby(ids).first()
    return {names[int(i)]: original[int(j)] for i, j in first.items()}


def _duplicates(identity: np.ndarray, *texts: np.ndarray) -> np.ndarray:
    """(n,) bool: rows repeating an earlier row's image and texts."""
    import pandas as pd

    frame = pd.DataFrame({"identity": identity, **{f"t{i}": t for i, t in enumerate(texts)}})
    return frame.duplicated(keep="first").to_numpy()


def read_class_names(path: str) -> list[str]:
    """Class names from ``--class_names``: one a line (trailing blank lines ignored)."""
    file = Path(path).expanduser()
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise LemonError(
            f"--class_names {file}: cannot read it ({err}); pass a text file with one class name "
            "a line."
        ) from err
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise LemonError(f"--class_names {file} is empty; write one class name a line.")
    if "" in lines:
        raise LemonError(
            f"--class_names {file}: line {lines.index('') + 1} is empty; write one class name a line."
        )
    seen = {}
    for i, name in enumerate(lines):
        if name in seen:
            raise LemonError(
                f"--class_names {file}: '{name}' is on lines {seen[name] + 1} and {i + 1}; every "
                "class needs its own name."
            )
        seen[name] = i
    return lines


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def class_ids(
    labels: np.ndarray, names_file: str | None, what: str, prompt: str
) -> tuple[list[str], np.ndarray]:
    """Class names and the class id of every label (stripped strings).

    Integer labels: with ``names_file``, label i is the name on line i (0-based); without it the labels
    themselves, in numeric order, become the names (with a warning: the text model then reads digits).
    Other labels (words, folder names): sorted, as torchvision's ImageFolder orders classes; with
    ``names_file`` the i-th sorted label takes the name on line i.
    """
    uniq, inverse = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    inverse = inverse.reshape(-1)
    numeric = all(_is_int(u) for u in uniq)
    if names_file:
        names = read_class_names(names_file)
        if numeric:
            values = np.asarray([int(u) for u in uniq], dtype=np.int64)
            bad = (values < 0) | (values >= len(names))
            if bad.any():
                raise LemonError(
                    f"{what}: label {values[bad][0]} has no line in --class_names {names_file} "
                    f"({len(names)} names for labels 0..{len(names) - 1})."
                )
            return names, values[inverse]
        if len(names) != len(uniq):
            raise LemonError(
                f"{what}: --class_names {names_file} has {len(names)} names but the data has "
                f"{len(uniq)} classes ({', '.join(uniq[:5])}{', ...' if len(uniq) > 5 else ''}); "
                "write one name a line for each class, in sorted order of the labels."
            )
        return names, inverse.astype(np.int64)
    if numeric:
        order = np.argsort([int(u) for u in uniq], kind="stable")
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[order] = np.arange(len(uniq))
        log.warning(
            "%s: the labels are numbers, so the text model reads prompts such as '%s%s'; pass "
            "--class_names FILE (one class name a line, line i naming label i) to give it words.",
            what,
            prompt,
            uniq[order[0]],
        )
        return [str(u) for u in uniq[order]], rank[inverse]
    return [str(u) for u in uniq], inverse.astype(np.int64)


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
        """Every row is scored or recorded, with its row number, in the dataset's ``dropped``: an empty
        image cell, an empty caption or label (or clean value), an unreadable image, or a repeat of an
        earlier row's image and texts."""
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
        cells = df[cols["image"]].to_numpy(dtype=object)
        drops = RowDrops(len(df))
        drops.mark(_blank(cells), NO_IMAGE)
        given = np.where(_blank(cells), "", cells).astype(object)
        drops.mark(_blank(df[observed_col]), EMPTY_TEXT if text else NO_LABEL)
        if cols["clean"]:
            drops.mark(_blank(df[cols["clean"]]), NO_CLEAN)
        live = np.flatnonzero(drops.kept)
        images, readable, identity = self._images(cells[live])
        if isinstance(images, BytesImages):  # bytes have no path: name them by their digest
            given[live] = images.ids
        ok, ident = np.zeros(len(df), dtype=bool), np.zeros(len(df), dtype=np.uint64)
        ok[live], ident[live] = readable, identity
        drops.mark(~ok, UNREADABLE_IMAGE)
        observed = _label_text(df[observed_col])
        clean = _label_text(df[cols["clean"]]) if cols["clean"] else observed
        drops.mark(_duplicates(ident, observed, clean) & drops.kept, DUPLICATE)
        rows = np.flatnonzero(drops.kept)
        if not len(rows):
            raise LemonError(
                f"{self.path}: no row can be scored ({len(df)} rows: {drops.summary()}); each row needs "
                f"a readable image in '{cols['image']}' and a non-empty '{observed_col}'."
            )
        images = images.subset(np.searchsorted(live, rows))
        class_names = None
        observed, clean = observed[rows], clean[rows]
        if task == "classification":
            class_names, ids = class_ids(
                np.concatenate([observed, clean]),
                self.table.class_names,
                f"{self.path} ('{observed_col}')",
                self.options.prompt,
            )
            observed, clean = ids[: len(rows)], ids[len(rows) :]
        elif self.table.class_names:
            log.warning("--class_names is ignored: %s holds captions, not class labels.", self.path)
        index = (
            named_splits(df["split"].astype(str).to_numpy()[rows], self.name)
            if "split" in df
            else identity_splits(ident[rows], data_seed, self.name)
        )
        pairs = PairSplit(
            "all",
            task,
            images,
            clean,
            observed,
            class_names=class_names,
            source_rows=rows,
            source_images=np.asarray([str(g) for g in given[rows]], dtype=object),
            identity=ident[rows],
            intrinsic_noise=bool(cols["clean"]),
            dropped=drops.record(given),
        )
        return build_splits(
            self.name,
            task,
            pairs,
            index,
            class_names=class_names,
            has_ground_truth=bool(cols["clean"]),
        )

    def _images(self, values: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
        """The image source over ``values`` (paths or bytes), which are readable, and their content ids."""
        blobs = [_blob(v) for v in values]
        if blobs and all(b is not None for b in blobs):
            ids = ["sha1:" + hashlib.sha1(b).hexdigest() for b in blobs]
            images = BytesImages(blobs, ids)
            ok = readable_bytes_mask(blobs)
            return images, ok, np.where(ok, images.identities(), np.uint64(0))
        if any(b is not None for b in blobs):
            raise LemonError(
                f"{self.path}: column '{self.columns['image']}' mixes image bytes and paths."
            )
        base = self.image_root or self.path.parent
        images = _file_images([str(v) for v in values], base)
        paths = [images.root / p for p in images.relpaths]
        ok, identity = inspect_images(paths)
        warn_unreadable(self.name, ok, paths)
        return images, ok, identity


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
            from lemon.core.errors import MissingDependencyError

            raise MissingDependencyError(
                "Reading parquet needs pyarrow: pip install pyarrow."
            ) from err
        except (ValueError, OSError) as err:
            raise LemonError(f"Cannot read {self.path} as parquet ({err}).") from err


def list_image_folder(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """(files, class folder names, splits) of an ImageFolder tree, row by row in the order a run numbers
    them (``row`` in scores.csv): files relative to ``folder`` (posix), sorted within sorted class folders;
    splits are 'train' / 'val' / 'test' for a tree with those sub-trees, else 'all'."""
    top = {p.name for p in folder.iterdir() if p.is_dir()}
    val_dir = next((v for v in VAL_DIRS if v in top), None)
    trees = (
        {"train": "train", "val": val_dir, "test": "test"}
        if {"train", "test"} <= top and val_dir
        else {"all": "."}
    )
    files, labels, split_of = [], [], []
    for split, sub in trees.items():
        for cls_dir in sorted(p for p in (folder / sub).iterdir() if p.is_dir()):
            found = sorted(f for f in cls_dir.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            files += [f.relative_to(folder).as_posix() for f in found]
            labels += [cls_dir.name] * len(found)
            split_of += [split] * len(found)
    return files, labels, split_of


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
        """Image files in sorted order (row i = the i-th file); unreadable files and repeats of an image
        already in the same class folder are recorded in the dataset's ``dropped``."""
        self.check_exists(root)
        folder = self.path
        files, labels, split_of = list_image_folder(folder)
        trees = {s: s for s in dict.fromkeys(split_of)}
        if not files:
            raise DatasetNotFoundError(
                f"Dataset 'folder' not found: no images in class folders under "
                f"{folder}. See DataSources.md#folder."
            )
        given = np.asarray(files, dtype=object)
        paths = [folder / f for f in files]
        ok, identity = inspect_images(paths)
        warn_unreadable(self.name, ok, paths)
        drops = RowDrops(len(files))
        drops.mark(~ok, UNREADABLE_IMAGE)
        labels_arr = np.asarray(labels, dtype=object)
        drops.mark(_duplicates(identity, labels_arr) & drops.kept, DUPLICATE)
        rows = np.flatnonzero(drops.kept)
        if not len(rows):
            raise LemonError(
                f"Dataset 'folder': no image under {folder} can be read ({drops.summary()})."
            )
        class_names, ids = class_ids(
            labels_arr[rows],
            self.table.class_names,
            f"{folder} (folder names)",
            self.options.prompt,
        )
        index = (
            identity_splits(identity[rows], data_seed, self.name)
            if "all" in trees
            else named_splits(np.asarray(split_of)[rows], self.name)
        )
        pairs = PairSplit(
            "all",
            self.task,
            _file_images(list(given[rows]), folder),
            ids,
            ids.copy(),
            class_names=class_names,
            source_rows=rows,
            source_images=given[rows],
            identity=identity[rows],
            dropped=drops.record(given),
        )
        return build_splits(
            self.name,
            self.task,
            pairs,
            index,
            class_names=class_names,
            has_ground_truth=False,
        )
