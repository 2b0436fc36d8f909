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
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lemon.core.errors import DatasetNotFoundError, LemonError
from lemon.core.paths import quote_path
from lemon.data.base import (
    CONFLICTING_LABEL,
    DUPLICATE,
    EMPTY_TEXT,
    HIDDEN_FILE,
    NO_CLASS_FOLDER,
    NO_CLEAN,
    NO_IMAGE,
    NO_LABEL,
    NOT_AN_IMAGE,
    UNSUPPORTED_IMAGE,
    Dataset,
    DatasetSplits,
    Dropped,
    FileImages,
    PairSplit,
    TableOptions,
)
from lemon.data.files import REASON_NAMES, fixes, list_folder, warn_not_read
from lemon.data.images import (
    READABLE,
    URL,
    file_url_path,
    inspect_bytes,
    inspect_files,
    is_url,
)
from lemon.data.labels import cell_text, is_number, merge_variants, variant_key
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

    def source(self, root: Path) -> str:
        return str(self.path)

    def given_path(self) -> Path:
        """``--data_path``; a clear error when it is not given."""
        if self.path is None:
            raise DatasetNotFoundError(
                f"Dataset '{self.name}' needs --data_path ({self.what}). "
                f"See DataSources.md#{self.name}."
            )
        return self.path

    def check_exists(self, root: Path) -> None:
        path = self.given_path()
        if not path.exists():
            raise DatasetNotFoundError(
                f"Dataset '{self.name}' not found: expected {path} (from "
                f"--data_path). See DataSources.md#{self.name}."
            )


def _file_images(paths: list[str], base: Path) -> FileImages:
    """FileImages over absolute paths (ids = absolute paths without the filesystem anchor); relative
    ``paths`` start from ``base``."""
    absolute = [Path(os.path.abspath(p if os.path.isabs(p) else base / p)) for p in paths]
    anchor = Path(absolute[0].anchor) if absolute else Path("/")
    return FileImages(anchor, [str(p.relative_to(p.anchor)) for p in absolute])


def _missing(cells: np.ndarray) -> np.ndarray:
    """(n,) bool: the cells :func:`cell_text` found missing or blank (None)."""
    return np.equal(cells, np.array(None, dtype=object))


def _blob(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
        return bytes(value["bytes"])
    return None


def _no_image(cells: np.ndarray) -> np.ndarray:
    """(n,) bool: image cells that are empty (missing, or a blank string)."""
    import pandas as pd

    missing = pd.isna(pd.Series(cells, dtype=object)).to_numpy()
    blank = np.asarray([isinstance(c, str) and not c.strip() for c in cells], dtype=bool)
    return missing | blank


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


def label_values_by_class(
    values: Any, names_file: str | None, label_variants: str = "merge"
) -> dict[str, Any]:
    """Class name (as a run names the class: :func:`class_ids`) -> the first of ``values`` (a table's label
    column, as read) in that class: how a class named in a run's outputs is written back in the table's
    own terms. Empty cells are skipped."""
    import pandas as pd

    original = np.asarray(list(values), dtype=object)
    text = cell_text(original, "the table's labels")
    keep = np.flatnonzero([v is not None for v in text])
    if not len(keep):
        return {}
    merged = merge_variants(text[keep], label_variants, "the table's labels")
    names, ids = class_ids(merged.astype(str), names_file, "the table's labels", "")
    first = pd.Series(np.arange(len(ids))).groupby(ids).first()
    return {names[int(i)]: original[keep[int(j)]] for i, j in zip(first.index, first)}


def folder_listing(folder: Path) -> dict[str, np.ndarray]:
    """Every file of an ImageFolder tree in the order a run numbers them (``row`` in scores.csv), with
    its class folder, split and status (:func:`lemon.data.files.list_folder`); the splits are the
    tree's ``train/``, ``val/`` and ``test/`` sub-trees when it has them, else 'all'."""
    top = {p.name for p in folder.iterdir() if p.is_dir()}
    val_dir = next((v for v in VAL_DIRS if v in top), None)
    trees = (
        {"train": "train", "val": val_dir, "test": "test"}
        if {"train", "test"} <= top and val_dir
        else {"all": "."}
    )
    return list_folder(folder, trees)


def _duplicates(identity: np.ndarray, *texts: np.ndarray) -> np.ndarray:
    """(n,) bool: rows repeating an earlier row's image and texts."""
    import pandas as pd

    frame = pd.DataFrame({"identity": identity, **{f"t{i}": t for i, t in enumerate(texts)}})
    return frame.duplicated(keep="first").to_numpy()


_HEADER = re.compile(
    r"^(#.*|(class|category|label|name|target)(es|s|ies)?([ _-]?(names?|ids?|labels?))?"
    r"|(id|index|idx)[,;\t ].*)$",
    re.IGNORECASE,
)
_NUMBERED = re.compile(r"^\d+\s*[,;:\t]\s*\S")


def read_class_names(path: str) -> list[str]:
    """Class names from ``--class_names``: one a line (trailing blank lines ignored). A first line that
    reads as a header ('class_name', 'label', '# ...') or lines that carry their own numbers ('0,cat')
    are errors: line i must name label i, so either shifts every prompt."""
    file = Path(path).expanduser()
    shown = quote_path(file)
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise LemonError(
            f"--class_names {shown}: cannot read it ({err}); pass a text file with one class name "
            "a line."
        ) from err
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise LemonError(f"--class_names {shown} is empty; write one class name a line.")
    if "" in lines:
        raise LemonError(
            f"--class_names {shown}: line {lines.index('') + 1} is empty; write one class name a line."
        )
    if _HEADER.match(lines[0]):
        raise LemonError(
            f"--class_names {shown}: line 1 '{lines[0]}' reads as a header or comment, not a class "
            "name; remove it (line i names label i, so it would shift every class by one)."
        )
    if len(lines) > 1 and all(_NUMBERED.match(line) for line in lines):
        raise LemonError(
            f"--class_names {shown}: its lines carry numbers ('{lines[0]}'); write the names alone, "
            "one a line, line i naming label i."
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(lines):
        if name in seen:
            raise LemonError(
                f"--class_names {shown}: '{name}' is on lines {seen[name] + 1} and {i + 1}; every "
                "class needs its own name."
            )
        seen[name] = i
    return lines


def class_ids(
    labels: np.ndarray, names_file: str | None, what: str, prompt: str, n_rows: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Class names and the class id of every label (strings, spellings already merged).

    Integer labels: with ``names_file``, label i is the name on line i (0-based); without it the labels
    themselves, in numeric order, become the names (with a warning: the text model then reads digits).
    Other labels (words, folder names): sorted, as torchvision's ImageFolder orders classes; with
    ``names_file`` the i-th sorted label takes the name on line i. Numbers and names mixed in one column
    are an error unless ``names_file`` turns the numbers into names. ``n_rows``: how many of ``labels``
    are the table's rows (the rest: its clean column), for the counts of messages.
    """
    uniq, inverse = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    inverse = inverse.reshape(-1)
    number = np.asarray([is_number(u) for u in uniq], dtype=bool)
    if number.any() and not number.all():
        rows = inverse[: n_rows or len(inverse)]
        n_num = int(np.isin(rows, np.flatnonzero(number)).sum())
        if not names_file:
            raise LemonError(
                f"{what}: the labels mix numbers and names ({n_num} rows numbered, e.g. "
                f"'{uniq[number][0]}'; {len(rows) - n_num} named, e.g. '{uniq[~number][0]}'), so "
                "'3' and the name it stands for would be two classes; pass --class_names FILE (line i "
                "names label i) to turn the numbers into names, or write one kind in the column."
            )
        names = read_class_names(names_file)
        values = np.asarray([int(float(u)) if n else -1 for u, n in zip(uniq, number)])
        bad = number & ((values < 0) | (values >= len(names)))
        if bad.any():
            raise LemonError(
                f"{what}: label {values[bad][0]} has no line in --class_names {quote_path(names_file)} "
                f"({len(names)} names for labels 0..{len(names) - 1})."
            )
        index = {variant_key(n): i for i, n in enumerate(names)}
        unknown = [u for u, n in zip(uniq, number) if not n and variant_key(u) not in index]
        if unknown:
            raise LemonError(
                f"{what}: the labels mix numbers and names, and the names {unknown[:3]} are not in "
                f"--class_names {quote_path(names_file)}; write each class as its number or as its "
                "name from that file."
            )
        ids = np.asarray(
            [v if n else index[variant_key(u)] for u, v, n in zip(uniq, values, number)]
        )
        return names, ids[inverse]
    numeric = bool(number.all())
    if names_file:
        names = read_class_names(names_file)
        if numeric:
            values = np.asarray([int(float(u)) for u in uniq], dtype=np.int64)
            bad = (values < 0) | (values >= len(names))
            if bad.any():
                raise LemonError(
                    f"{what}: label {values[bad][0]} has no line in --class_names "
                    f"{quote_path(names_file)} ({len(names)} names for labels 0..{len(names) - 1})."
                )
            if len(names) > values.max() + 1:
                log.warning(
                    "%s: --class_names %s has %d names but the labels go up to %d; lines %d-%d name "
                    "no label (fine for classes absent from the data; if the file has a header "
                    "line, remove it).",
                    what,
                    quote_path(names_file),
                    len(names),
                    values.max(),
                    values.max() + 2,
                    len(names),
                )
            return names, values[inverse]
        if len(names) != len(uniq):
            raise LemonError(
                f"{what}: --class_names {quote_path(names_file)} has {len(names)} names but the data "
                f"has {len(uniq)} classes ({', '.join(uniq[:5])}{', ...' if len(uniq) > 5 else ''}); "
                "write one name a line for each class, in sorted order of the labels."
            )
        return names, inverse.astype(np.int64)
    if numeric:
        order = np.argsort([int(float(u)) for u in uniq], kind="stable")
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
    if set(uniq) <= {"True", "False"}:
        log.warning(
            "%s: the labels are True/False, so the text model reads prompts such as '%sTrue'; pass "
            "--class_names FILE (line 1 names False, line 2 True) to give it words.",
            what,
            prompt,
        )
    return [str(u) for u in uniq], inverse.astype(np.int64)


def check_classes(class_names: list[str], ids: np.ndarray, what: str) -> None:
    """One class in the whole data cannot show a label error (every pair has the same text): a
    one-line error, before any embedding."""
    present = np.unique(ids)
    if len(present) < 2:
        name = class_names[int(present[0])] if len(present) else "-"
        raise LemonError(
            f"{what}: every pair has the same label '{name}' (1 class); LEMoN finds a label error as a "
            "pair whose label disagrees with its neighbours', so it needs at least two classes: add "
            "the other classes' rows (or images), or score captions instead."
        )


def conflicting(
    identity: np.ndarray, labels: np.ndarray, mode: str, what: str, given: np.ndarray
) -> np.ndarray:
    """(n,) bool: rows to drop because their image also appears with another label (``mode`` first:
    all but its first row; drop: all its rows; keep: none). One warning line with the counts."""
    import pandas as pd

    frame = pd.DataFrame({"id": identity, "label": labels})
    n_labels = frame.groupby("id")["label"].transform("nunique").to_numpy()
    rows = np.flatnonzero(n_labels > 1)
    if not len(rows):
        return np.zeros(len(labels), dtype=bool)
    n_images = len(np.unique(identity[rows]))
    first = rows[0]
    same = rows[identity[rows] == identity[first]]
    example = f"{quote_path(given[first])} as " + " and ".join(
        f"'{v}'" for v in pd.unique(labels[same])[:3]
    )
    action = {
        "keep": "every pair is scored (at most one label of each can be right); "
        "--conflicting_labels first keeps each image's first row, drop drops them all",
        "first": "each image's first row is kept, the others are listed in dropped.csv "
        "(--conflicting_labels first); keep scores them all",
        "drop": "they are all listed in dropped.csv (--conflicting_labels drop); keep scores them all",
    }[mode]
    log.warning(
        "%s: %d image(s) appear with two or more different labels (%d rows; e.g. %s): %s.",
        what,
        n_images,
        len(rows),
        example,
        action,
    )
    if mode == "keep":
        return np.zeros(len(labels), dtype=bool)
    drop = n_labels > 1
    if mode == "first":
        drop &= frame.duplicated("id", keep="first").to_numpy()
    return drop


def canonical_order(images: np.ndarray, *texts: np.ndarray) -> np.ndarray:
    """A row order fixed by what each pair is (its image as given: a path, or the digest of its bytes;
    then its texts), not by where it sits in the table: a table and the same table reordered give every
    later stage the same arrays, so neighbours tied in similarity (identical class prompts, copies of
    one image) are broken alike and the same pairs get the same flags. (Not by the image's content id:
    a file replaced in place keeps its place, so cache entries keyed by file stamps stay aligned.)"""
    keys = [np.asarray(t, dtype=str) for t in (*reversed(texts), images)]
    return np.lexsort(keys)


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
        image cell, an empty caption or label (or clean value), an image that is missing, unreadable,
        too large or a URL, a repeat of an earlier row's image and texts, or (``--conflicting_labels``)
        an image given another label too."""
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
                f"{quote_path(self.path)}: the table needs {problem}; its columns are "
                f"{list(df.columns)}."
            )
        if cols["clean"] and cols["clean"] not in df:
            raise LemonError(
                f"{quote_path(self.path)}: no clean column '{cols['clean']}' (--clean_column); its "
                f"columns are {list(df.columns)}."
            )
        task = "captioning" if text else "classification"
        observed_col = cols["text"] if text else cols["label"]
        shown = f"{quote_path(self.path)} ('{observed_col}')"
        cells = df[cols["image"]].to_numpy(dtype=object)
        observed = self._texts(
            df[observed_col], task, f"{quote_path(self.path)} column '{observed_col}'"
        )
        clean = (
            self._texts(
                df[cols["clean"]], task, f"{quote_path(self.path)} column '{cols['clean']}'"
            )
            if cols["clean"]
            else observed
        )
        drops = RowDrops(len(df))
        no_image = _no_image(cells)
        drops.mark(no_image, NO_IMAGE)
        given = np.where(no_image, "", cells).astype(object)
        drops.mark(_missing(observed), EMPTY_TEXT if text else NO_LABEL)
        if cols["clean"]:
            drops.mark(_missing(clean), NO_CLEAN)
        if task == "classification":
            kept = drops.kept
            both = merge_variants(
                np.concatenate([observed[kept], clean[kept]]), self.table.label_variants, shown
            )
            observed, clean = observed.copy(), clean.copy()
            observed[kept], clean[kept] = both[: kept.sum()], both[kept.sum() :]
        live = np.flatnonzero(drops.kept)
        images, reasons, identity = self._images(cells[live])
        if isinstance(images, BytesImages):  # bytes have no path: name them by their digest
            given[live] = images.ids
        code, ident = np.zeros(len(df), dtype=np.int64), np.zeros(len(df), dtype=np.uint64)
        code[live], ident[live] = reasons, identity
        for value, reason in REASON_NAMES.items():
            drops.mark(code == value, reason)
        drops.mark(_duplicates(ident, observed, clean) & drops.kept, DUPLICATE)
        if task == "classification":
            kept = np.flatnonzero(drops.kept)
            lose = conflicting(
                ident[kept], observed[kept], self.table.conflicting_labels, shown, given[kept]
            )
            mask = np.zeros(len(df), dtype=bool)
            mask[kept[lose]] = True
            drops.mark(mask, CONFLICTING_LABEL)
        rows = np.flatnonzero(drops.kept)
        if not len(rows):
            raise LemonError(
                f"{quote_path(self.path)}: no row can be scored ({len(df)} rows: {drops.summary()}); "
                f"each row needs a readable image in '{cols['image']}' and a non-empty "
                f"'{observed_col}'{fixes(drops.reasons)}."
            )
        warn_not_read(self.name, code, given)
        rows = rows[canonical_order(given[rows], observed[rows], clean[rows])]
        images = images.subset(np.searchsorted(live, rows))
        class_names = None
        observed, clean = observed[rows], clean[rows]
        if task == "classification":
            class_names, ids = class_ids(
                np.concatenate([observed, clean]),
                self.table.class_names,
                shown,
                self.options.prompt,
                n_rows=len(rows),
            )
            observed, clean = ids[: len(rows)], ids[len(rows) :]
        elif self.table.class_names:
            log.warning(
                "--class_names is ignored: %s holds captions, not class labels.",
                quote_path(self.path),
            )
        index = (
            named_splits(df["split"].astype(str).to_numpy()[rows], self.name)
            if "split" in df
            else identity_splits(ident[rows], data_seed, self.name)
        )
        if task == "classification":
            assert class_names is not None  # class_ids named the classes above
            check_classes(class_names, observed, shown)
        elif len(np.unique(observed.astype(str))) < 2:
            raise LemonError(
                f"{shown}: every pair has the same caption '{observed[0]}'; LEMoN finds an error as a "
                "caption that disagrees with its neighbours', so it needs different captions."
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

    @staticmethod
    def _texts(column: Any, task: str, what: str) -> np.ndarray:
        """The column's cells as text (None where missing); captions lose surrounding whitespace,
        labels keep it for :func:`merge_variants` to count."""
        texts = cell_text(column.to_numpy(dtype=object), what)
        if task == "captioning":
            texts = np.asarray([t if t is None else t.strip() for t in texts], dtype=object)
        return texts

    def _images(self, values: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
        """The image source over ``values`` (paths, URLs or bytes), each one's reason code (0 readable,
        :mod:`lemon.data.images`) and content id."""
        blobs = [b for b in (_blob(v) for v in values) if b is not None]
        limit = self.table.max_image_pixels
        if blobs and len(blobs) == len(values):
            ids = ["sha1:" + hashlib.sha1(b).hexdigest() for b in blobs]
            images = BytesImages(blobs, ids)
            codes = np.asarray([inspect_bytes(b, "", limit) for b in blobs], dtype=np.int64)
            return images, codes, np.where(codes == READABLE, images.identities(), np.uint64(0))
        if blobs:
            raise LemonError(
                f"{quote_path(self.path)}: column '{self.columns['image']}' mixes image bytes and "
                "paths."
            )
        texts = [str(v).strip() if is_url(v) else str(v) for v in values]
        local = [file_url_path(t) if is_url(t) else t for t in texts]
        remote = np.asarray([p is None for p in local], dtype=bool)
        if remote.all() and len(remote):
            raise LemonError(
                f"{quote_path(self.path)}: column '{self.columns['image']}' holds URLs (first: "
                f"{quote_path(texts[0])}); lemon reads local image files only: download them first "
                "(e.g. wget -x -i urls.txt, aws s3 cp --recursive, gsutil -m cp -r) and write the "
                "local paths into the column."
            )
        base = self.image_root or self.given_path().parent
        files = _file_images([p or "" for p in local], base)
        paths = [files.root / p for p in files.relpaths]
        codes, identity = inspect_files([p for p, r in zip(paths, remote) if not r], limit)
        out_codes = np.full(len(values), URL, dtype=np.int64)
        out_ids = np.zeros(len(values), dtype=np.uint64)
        out_codes[~remote], out_ids[~remote] = codes, identity
        return files, out_codes, out_ids


@DATASETS.register("csv")
class CsvTable(_Table):
    """A CSV table of image paths and captions or labels (``--data_path table.csv``)."""

    what: ClassVar[str] = "a .csv table with an image column and a caption or label column"

    def read(self):
        import pandas as pd

        try:  # every cell as written: 'None', 'NaN', 'null', '007' are text; only empty cells missing
            return pd.read_csv(self.path, dtype=str, keep_default_na=False, na_values=[""])
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
        """Every file under the tree in sorted order (row i = the i-th file): images in class folders
        are scored; hidden files, files that are no image (or a format without its plugin), images
        outside a class folder, unreadable or oversized ones and repeats of an image already in the
        same class folder are recorded, with their reason, in the dataset's ``dropped``."""
        self.check_exists(root)
        folder = self.given_path()
        listing = folder_listing(folder)
        trees = {s: s for s in dict.fromkeys(listing["splits"])}
        given, status = listing["files"], listing["status"]
        candidates = np.flatnonzero(status == "")
        if not len(candidates):
            raise DatasetNotFoundError(
                f"Dataset 'folder' not found: no images in class folders under "
                f"{quote_path(folder)}"
                + (f" ({len(given)} other files: {_count(status)})" if len(given) else "")
                + ". See DataSources.md#folder."
            )
        drops = RowDrops(len(given))
        for reason in (HIDDEN_FILE, NOT_AN_IMAGE, UNSUPPORTED_IMAGE, NO_CLASS_FOLDER):
            drops.mark(status == reason, reason)
        codes = np.full(len(given), READABLE, dtype=np.int64)
        identity = np.zeros(len(given), dtype=np.uint64)
        codes[candidates], identity[candidates] = inspect_files(
            [folder / f for f in given[candidates]], self.table.max_image_pixels
        )
        for value, reason in REASON_NAMES.items():
            drops.mark(codes == value, reason)
        shown = f"{quote_path(folder)} (folder names)"
        labels = listing["labels"].copy()
        kept = drops.kept
        labels[kept] = merge_variants(labels[kept], self.table.label_variants, shown)
        drops.mark(_duplicates(identity, labels) & drops.kept, DUPLICATE)
        kept = np.flatnonzero(drops.kept)
        lose = conflicting(
            identity[kept], labels[kept], self.table.conflicting_labels, shown, given[kept]
        )
        mask = np.zeros(len(given), dtype=bool)
        mask[kept[lose]] = True
        drops.mark(mask, CONFLICTING_LABEL)
        rows = np.flatnonzero(drops.kept)
        if not len(rows):
            raise LemonError(
                f"Dataset 'folder': no image under {quote_path(folder)} can be read "
                f"({drops.summary()}){fixes(drops.reasons)}."
            )
        where = np.asarray([str(folder / f) for f in given], dtype=object)  # as read
        warn_not_read(self.name, codes, where)
        _warn_listed(self.name, status, where)
        rows = rows[canonical_order(given[rows], labels[rows])]
        class_names, ids = class_ids(
            labels[rows], self.table.class_names, shown, self.options.prompt
        )
        index = (
            identity_splits(identity[rows], data_seed, self.name)
            if "all" in trees
            else named_splits(listing["splits"][rows], self.name)
        )
        check_classes(class_names, ids, shown)
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


def _count(status: np.ndarray) -> str:
    names, counts = np.unique(status.astype(str), return_counts=True)
    return ", ".join(f"{c} {n or 'image'}" for n, c in zip(names, counts))


def _warn_listed(name: str, status: np.ndarray, given: np.ndarray) -> None:
    """One line for the files of an image folder that are not read for what they are (hidden, no image,
    no plugin, no class folder)."""
    listed = np.flatnonzero(status != "")
    if not len(listed):
        return
    parts = []
    for reason in (NOT_AN_IMAGE, UNSUPPORTED_IMAGE, NO_CLASS_FOLDER, HIDDEN_FILE):
        rows = np.flatnonzero(status == reason)
        if len(rows):
            parts.append(f"{len(rows)} {reason} (first: {quote_path(given[rows[0]])})")
    fix = "; pip install pillow-heif reads HEIC" if (status == UNSUPPORTED_IMAGE).any() else ""
    log.warning(
        "%s: not reading %d of %d files: %s%s; each is listed with its reason in dropped.csv.",
        name,
        len(listed),
        len(status),
        ", ".join(parts),
        fix,
    )
