"""``python -m lemon.review apply``: the user's own table with the review's decisions applied.

Reads the run's args.json to find the input (a csv or parquet table, or an ImageFolder tree), matches the
decisions to the run's scored pairs (scores.csv's ``row``, ``split``, ``image``), and writes a new table:

- a pair judged ``wrong`` with a ``corrected`` label or caption takes it (the old value in
  ``review_original``);
- a pair judged ``wrong`` without a correction is removed, or kept with ``review_action`` =
  ``marked_wrong`` under ``--mark``;
- ``right`` and ``unsure`` pairs are kept as they are (``review_action`` = ``confirmed`` / ``unsure``);
- every other row is kept unchanged, with empty review columns.

The review columns are ``review_decision``, ``review_action`` and ``review_original``. A folder is written
as a list of its files (``image`` relative to the folder, ``label`` = class folder name, ``split`` for a
tree with train/val/test sub-trees). The input and the run folder are never written to; the output is
written atomically and an existing one only with ``--overwrite``.
"""

from __future__ import annotations

import io as _bytes
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon.core.errors import LemonError
from lemon.core.io import DONE, atomic_open, read_json
from lemon.data.decisions import match_decisions, read_decisions

log = logging.getLogger(__name__)

#: the columns apply adds to the table
REVIEW_COLUMNS = ("review_decision", "review_action", "review_original")
#: datasets whose input apply can write back
TABLES = ("csv", "parquet")
FORMATS = {".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_decisions` wrote: the output path and how many rows it changed, by action."""

    output: Path
    rows_in: int
    rows_out: int
    counts: dict[str, int]

    def summary(self) -> str:
        parts = ", ".join(f"{n} {action}" for action, n in self.counts.items() if n)
        return (
            f"{self.output}: {self.rows_out} of {self.rows_in} rows ({parts or 'nothing changed'}); "
            "the input and the run are untouched."
        )


def apply_decisions(
    run_dir: str | Path,
    decisions: str | Path,
    output: str | Path,
    mark: bool = False,
    overwrite: bool = False,
    input_path: str | Path | None = None,
) -> Applied:
    """Write the run's input table with ``decisions`` applied to ``output`` (see the module docstring).

    ``input_path``: the table (or folder) when args.json's ``data_path`` does not lead to it from here
    (e.g. the run was started in another folder). Every refusal is one :class:`LemonError` line.
    """
    run = Path(run_dir).expanduser()
    args = _run_args(run)
    dataset = args.get("dataset")
    if dataset not in (*TABLES, "folder"):
        raise LemonError(
            f"apply writes your own table back, but run {run} scored --dataset {dataset}, which has no "
            "table of yours; apply works on runs of --dataset csv, parquet or folder."
        )
    source = _input(args, input_path)
    out = _check_output(Path(output).expanduser(), source, run, dataset, overwrite)
    keys = pd.read_csv(run / "scores.csv", usecols=lambda c: c in ("split", "row", "image"))
    chosen = read_decisions(decisions)
    found = match_decisions(
        chosen,
        keys["split"].to_numpy(),
        keys["row"].to_numpy(),
        keys["image"].to_numpy(dtype=object) if "image" in keys else None,
        str(decisions),
        f"run {run}",
    )
    chosen = chosen.assign(row=keys["row"].to_numpy()[found])
    table, column, image_column = _read_input(source, dataset, args)
    _check_unchanged(table, image_column, chosen, source)
    names = (
        _label_names(table, column, args) if dataset == "folder" or _classes(args, table) else {}
    )
    result, counts = _apply(table, column, chosen, mark, names, dataset != "csv")
    _write(result, out)
    return Applied(out, len(table), len(result), counts)


def _run_args(run: Path) -> dict[str, Any]:
    """A finished run's args.json (one-line errors for a folder that is not one)."""
    if not (run / "args.json").is_file() or not (run / "scores.csv").is_file():
        raise LemonError(
            f"{run} is not a lemon run folder (no args.json and scores.csv); pass --run the "
            "--output_dir of a finished run_lemon."
        )
    if not (run / DONE).is_file():
        raise LemonError(f"Run {run} is not finished (no '{DONE}' file); let it finish first.")
    return read_json(run / "args.json")


def _input(args: dict[str, Any], given: str | Path | None) -> Path:
    """The input table or folder: ``given``, else args.json's data_path."""
    path = Path(given if given is not None else args.get("data_path") or "").expanduser()
    if not str(path) or not path.exists():
        raise LemonError(
            f"The run's input {path} (args.json data_path) is not found from here; pass --input "
            "PATH (the table or folder the run scored)."
        )
    return path.resolve()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_output(out: Path, source: Path, run: Path, dataset: str, overwrite: bool) -> Path:
    """Refuse an output that would overwrite the input, write into the run or the input folder, or
    replace a file without --overwrite; the output's format must be the input's."""
    target = Path(os.path.abspath(out))
    if target.exists() and target.resolve() == source:
        raise LemonError(f"--output {out} is the input itself; write the cleaned table elsewhere.")
    if _inside(target.resolve(), run.resolve()):
        raise LemonError(
            f"--output {out} is inside the run folder {run}; lemon never writes into a finished run: "
            "write the cleaned table elsewhere."
        )
    if dataset == "folder" and _inside(target.resolve(), source):
        raise LemonError(
            f"--output {out} is inside the image folder {source}; write the list elsewhere."
        )
    suffix = target.suffix.lower()
    wanted = {"csv": (".csv",), "parquet": (".parquet",), "folder": tuple(FORMATS)}[dataset]
    if suffix not in wanted:
        raise LemonError(
            f"--output {out}: the cleaned table is written as the input was ({dataset}); name it "
            f"with {' or '.join(wanted)}."
        )
    if target.is_dir():
        raise LemonError(f"--output {out} is a folder; name the file to write.")
    if target.exists() and not overwrite:
        raise LemonError(f"--output {out} exists; pass --overwrite to replace it.")
    if not target.parent.is_dir():
        raise LemonError(f"--output {out}: folder {target.parent} does not exist; create it first.")
    return target


def _read_input(source: Path, dataset: str, args: dict[str, Any]) -> tuple[pd.DataFrame, str, str]:
    """(the input as the run read it, row for row; the column the review corrects; the image column).

    CSV cells are read as text, exactly as written (no number or NA conversion), so untouched rows are
    written back with the same values."""
    if dataset == "folder":
        from lemon.data.custom import folder_listing

        listing = folder_listing(source)  # every file, numbered as the run numbered them
        table = pd.DataFrame({"image": listing["files"], "label": listing["labels"]})
        if set(listing["splits"]) != {"all"}:
            table["split"] = listing["splits"]
        return table, "label", "image"
    try:
        if dataset == "csv":
            table = pd.read_csv(source, dtype=str, keep_default_na=False, na_filter=False)
        else:
            table = pd.read_parquet(source)
    except (ValueError, OSError, UnicodeDecodeError, ImportError) as err:
        raise LemonError(f"Cannot read the run's input {source} ({err}).") from err
    text, label = args.get("text_column") or "", args.get("label_column") or ""
    column = text if text and text in table else label
    image = args.get("image_column") or "image"
    if column not in table or image not in table:
        raise LemonError(
            f"The run's input {source} lacks its image column '{image}' or its caption / label column "
            f"('{text}' / '{label}') now (its columns: {list(table.columns)}); it changed since the "
            "run: run lemon on it again."
        )
    return table, column, image


def _check_unchanged(
    table: pd.DataFrame, image_column: str, decisions: pd.DataFrame, source: Path
) -> None:
    """The decided rows still exist and hold the images the run scored (paths as given)."""
    rows = decisions["row"].to_numpy(dtype=np.int64)
    beyond = rows >= len(table)
    if beyond.any():
        raise LemonError(
            f"The run's input {source} has {len(table)} rows, but the decisions name row "
            f"{int(rows[beyond][0])}; it changed since the run: run lemon on it again."
        )
    cells = table[image_column].to_numpy(dtype=object)[rows]
    given = decisions["image"].astype(str).to_numpy()
    is_text = np.asarray([isinstance(c, str) for c in cells])  # image bytes are named sha1:...
    check = np.flatnonzero(is_text & (given != ""))
    differ = np.zeros(len(rows), dtype=bool)
    differ[check] = cells[check].astype(str) != given[check]
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise LemonError(
            f"Row {int(rows[i])} of {source} holds image '{cells[i]}', but the run scored "
            f"'{given[i]}' there; the table changed since the run: run lemon on it again."
        )


def _classes(args: dict[str, Any], table: pd.DataFrame) -> bool:
    """Whether the run read class labels (not captions) from the table."""
    text = args.get("text_column") or ""
    return not (text and text in table)


def _label_names(table: pd.DataFrame, column: str, args: dict[str, Any]) -> dict[str, Any]:
    """Class name (as scores.csv's suggested_label names it) -> the table's own label value, so a
    suggestion written back is a label of the table's kind."""
    from lemon.data.custom import label_values_by_class

    return label_values_by_class(
        table[column], args.get("class_names"), args.get("label_variants") or "merge"
    )


def _apply(
    table: pd.DataFrame,
    column: str,
    decisions: pd.DataFrame,
    mark: bool,
    names: dict[str, Any],
    typed: bool,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The table with the decisions applied and the review columns, and the counts by action."""
    out = table.copy()
    taken = [c for c in REVIEW_COLUMNS if c in out]
    if taken:
        log.warning(
            "the table already has %s (from an earlier review); they now describe this review.",
            ", ".join(taken),
        )
    n = len(out)
    rows = decisions["row"].to_numpy(dtype=np.int64)
    decision = decisions["decision"].to_numpy(dtype=object)
    corrected = decisions["corrected"].astype(str).str.strip().to_numpy(dtype=object)
    current = out[column].to_numpy(dtype=object)[rows]
    as_text = np.asarray([str(v) for v in current], dtype=object)
    mapped = np.asarray([names.get(c, c) for c in corrected], dtype=object)
    fixes = (decision == "wrong") & (corrected != "") & (mapped.astype(str) != as_text)
    wrong_only = (decision == "wrong") & ~fixes
    ignored = (decision != "wrong") & (corrected != "")
    if ignored.any():
        log.warning(
            "%d decision(s) are 'right' or 'unsure' but carry a correction; it is not applied "
            "(only 'wrong' pairs are corrected).",
            int(ignored.sum()),
        )
    action = np.where(
        fixes,
        "corrected",
        np.where(wrong_only, "marked_wrong", np.where(decision == "right", "confirmed", "unsure")),
    )
    review = {name: np.full(n, "", dtype=object) for name in REVIEW_COLUMNS}
    review["review_decision"][rows] = decision
    review["review_action"][rows] = action
    review["review_original"][rows[fixes]] = as_text[fixes]  # text: one type for csv and parquet
    new = mapped[fixes]
    if typed:
        new = _typed(out[column], new)
    values = out[column].to_numpy(dtype=object).copy()
    values[rows[fixes]] = new
    unseen = len(set(map(str, new)) - set(map(str, out[column].unique()))) if names else 0
    if unseen:
        log.warning(
            "%d correction(s) name a label the table does not use yet; written as given.", unseen
        )
    out[column] = _column(values, out[column].dtype)
    for name, value in review.items():
        out[name] = value
    keep = np.ones(n, dtype=bool)
    if not mark:
        keep[rows[wrong_only]] = False
    counts = {
        "corrected": int(fixes.sum()),
        "removed" if not mark else "marked wrong": int(wrong_only.sum()),
        "confirmed right": int((decision == "right").sum()),
        "unsure": int((decision == "unsure").sum()),
    }
    return out[keep].reset_index(drop=True), counts


def _typed(column: pd.Series, values: np.ndarray) -> np.ndarray:
    """Corrections as values of the column's type where they convert (e.g. '3' into an integer label
    column of a parquet table); as given otherwise."""
    if not len(values) or column.dtype == object:
        return values
    try:
        return pd.Series(values).astype(column.dtype).to_numpy(dtype=object)
    except (ValueError, TypeError):
        return values


def _column(values: np.ndarray, dtype: Any) -> pd.Series:
    """The corrected column in its original type where every value still fits it."""
    try:
        return pd.Series(values).astype(dtype)
    except (ValueError, TypeError):
        return pd.Series(values, dtype=object)


def _write(table: pd.DataFrame, out: Path) -> None:
    """The table as csv or parquet (by the output's suffix), written atomically."""
    if FORMATS[out.suffix.lower()] == "csv":
        with atomic_open(out) as f:
            table.to_csv(f, index=False, lineterminator="\n")
        return
    buf = _bytes.BytesIO()
    try:
        table.to_parquet(buf, index=False)
    except ImportError as err:
        from lemon.core.errors import MissingDependencyError

        raise MissingDependencyError("Writing parquet needs pyarrow: pip install pyarrow.") from err
    with atomic_open(out, "wb") as f:
        f.write(buf.getvalue())
