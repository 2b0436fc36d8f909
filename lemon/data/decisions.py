"""Review decisions: the ``decisions.csv`` a person writes while reviewing a run's flags (the report's review
page downloads it), read back by ``python -m lemon.review apply`` and ``run_lemon --reviewed``.

Columns (one line per reviewed pair):

- ``row``: the pair's ``row`` in the run's scores.csv (the user's table row, 0-based as pandas reads it;
  for datasets without a table, the pair's index within its split);
- ``image``: scores.csv's ``image`` as given (empty when the run has none); checked against the run;
- ``decision``: ``wrong`` (the pair is mislabelled), ``right`` or ``unsure``;
- ``corrected``: the corrected label or caption (may be empty);
- ``audit``: 1 when the pair was shown as part of the uniform random audit sample drawn across every
  scored pair, else 0;
- ``reviewed_at``: when (ISO 8601; may be empty);
- optionally ``split``: the pair's split, which tells apart a ``row`` that occurs in several splits.

The format lives here, below every layer that reads it (the run, the report, lemon.review).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lemon.core.errors import LemonError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: the columns of decisions.csv, in the order the review page writes them
COLUMNS = ("row", "image", "decision", "corrected", "audit", "reviewed_at")
#: an optional 7th column
SPLIT = "split"
#: allowed values of ``decision``
DECISIONS = ("wrong", "right", "unsure")
_AUDIT = {"0": False, "1": True, "false": False, "true": True}


def _where(path: Path, i: int) -> str:
    """Where record ``i`` (0-based) is: its line in the file (the header is line 1)."""
    return f"{path} line {i + 2}"


def read_decisions(path: str | Path) -> pd.DataFrame:
    """decisions.csv as a frame (``row`` int, ``image``/``corrected``/``split`` str, ``decision`` one of
    :data:`DECISIONS`, ``audit`` bool, ``reviewed_at`` str), validated; one line per pair: where a pair
    has several decisions the latest (by ``reviewed_at``, then by position) wins, with a warning.

    Every problem is one :class:`LemonError` line naming the file, the line and the fix.
    """
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise LemonError(
            f"Decisions file not found: {path}; pass the decisions.csv downloaded from the report's "
            "review page (--decisions / --reviewed)."
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise LemonError(f"Cannot read decisions {path} as CSV ({err}).") from err
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise LemonError(
            f"{path} lacks the column(s) {', '.join(missing)}; decisions.csv needs "
            f"{', '.join(COLUMNS)} (and optionally {SPLIT})."
        )
    if df.empty:
        raise LemonError(f"{path} holds no decisions (only a header); review some pairs first.")
    out = pd.DataFrame(index=df.index)
    rows = df["row"].str.strip()
    bad = ~rows.str.fullmatch(r"\d+")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise LemonError(
            f"{_where(path, i)}: row '{df['row'].iloc[i]}' is not a row number; write scores.csv's "
            "'row' (a whole number >= 0)."
        )
    out["row"] = rows.astype(np.int64)
    out["image"] = df["image"]
    decision = df["decision"].str.strip().str.lower()
    bad = ~decision.isin(DECISIONS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise LemonError(
            f"{_where(path, i)}: decision '{df['decision'].iloc[i]}' is not one of "
            f"{', '.join(DECISIONS)}."
        )
    out["decision"] = decision
    out["corrected"] = df["corrected"]
    audit = df["audit"].str.strip().str.lower()
    bad = ~audit.isin(list(_AUDIT))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise LemonError(
            f"{_where(path, i)}: audit '{df['audit'].iloc[i]}' must be 1 (the pair came from the "
            "random audit sample) or 0."
        )
    out["audit"] = audit.map(_AUDIT).astype(bool)
    stamps = df["reviewed_at"].str.strip()
    parsed = pd.to_datetime(stamps.where(stamps != ""), errors="coerce", format="ISO8601", utc=True)
    bad = (stamps != "") & parsed.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise LemonError(
            f"{_where(path, i)}: reviewed_at '{df['reviewed_at'].iloc[i]}' is not an ISO 8601 time "
            "(e.g. 2025-05-01T12:30:00Z); leave it empty if unknown."
        )
    out["reviewed_at"] = df["reviewed_at"]
    out["split"] = df[SPLIT].str.strip() if SPLIT in df.columns else ""
    out["_time"] = parsed
    out["_line"] = np.arange(len(df))
    return _latest(out, path)


def _latest(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One decision per (split, row, image): the latest reviewed_at wins (then the later line)."""
    ordered = df.sort_values(["_time", "_line"], na_position="first", kind="stable")
    latest = ordered.drop_duplicates(["split", "row", "image"], keep="last").sort_values("_line")
    if len(latest) < len(df):
        log.warning(
            "%s: %d pair(s) have several decisions; the latest of each (by reviewed_at, then by "
            "line) is used.",
            path,
            len(df) - len(latest),
        )
    return latest.drop(columns="_time").reset_index(drop=True)


def match_decisions(
    decisions: pd.DataFrame,
    run_split: np.ndarray,
    run_row: np.ndarray,
    run_image: np.ndarray | None,
    source: str,
    what: str = "the run",
) -> np.ndarray:
    """(m,) position of each decision's pair among the run's pairs, given as aligned arrays of their split,
    row and image (None: the run has no image column).

    A decision names its pair by ``row`` (and ``split`` when it has one); a row that occurs in several
    splits without a ``split``, a row the run did not score, or an image that is not the run's at that
    row are one-line errors naming the first such line of ``source`` (the decisions file).
    """
    import pandas as pd

    run = pd.DataFrame(
        {
            "split": np.asarray(run_split).astype(str),
            "row": np.asarray(run_row, dtype=np.int64),
            "position": np.arange(len(run_row)),
        }
    )
    has_split = decisions["split"].astype(str) != ""
    found = np.full(len(decisions), -1, dtype=np.int64)
    count = np.zeros(len(decisions), dtype=np.int64)
    keyed = decisions.assign(_i=np.arange(len(decisions)))
    for keys, part in ((["split", "row"], keyed[has_split]), (["row"], keyed[~has_split])):
        if part.empty:
            continue
        hits = part[[*keys, "_i"]].merge(run[[*keys, "position"]], on=keys, how="inner")
        sizes = hits.groupby("_i").size()
        count[sizes.index.to_numpy()] = sizes.to_numpy()
        matched = hits.drop_duplicates("_i")
        found[matched["_i"].to_numpy()] = matched["position"].to_numpy()
    for problem in np.flatnonzero(count != 1):
        line = int(decisions["_line"].iloc[problem])
        row, split = int(decisions["row"].iloc[problem]), decisions["split"].iloc[problem]
        if count[problem] > 1:
            splits = sorted(run.loc[run["row"] == row, "split"].unique())
            raise LemonError(
                f"{_where(Path(source), line)}: row {row} is in several splits of {what} "
                f"({', '.join(splits)}); add a 'split' column to the decisions to say which."
            )
        where = f"row {row}" + (f" of split '{split}'" if split else "")
        raise LemonError(
            f"{_where(Path(source), line)}: {where} is not a scored pair of {what} (not in its "
            "scores.csv); were these decisions made on another run or table?"
        )
    positions, first = np.unique(found, return_index=True)
    if len(positions) < len(found):
        twice = np.setdiff1d(np.arange(len(found)), first)[0]
        other = int(first[np.searchsorted(positions, found[twice])])
        raise LemonError(
            f"{_where(Path(source), int(decisions['_line'].iloc[twice]))}: row "
            f"{int(decisions['row'].iloc[twice])} already has a decision on line "
            f"{int(decisions['_line'].iloc[other]) + 2} (one with a split, one without); keep one."
        )
    if run_image is not None:
        given = decisions["image"].astype(str).to_numpy()
        actual = np.asarray(run_image, dtype=object)[found].astype(str)
        wrong = np.flatnonzero((given != "") & (given != actual))
        if len(wrong):
            i = int(wrong[0])
            raise LemonError(
                f"{_where(Path(source), int(decisions['_line'].iloc[i]))}: row "
                f"{int(decisions['row'].iloc[i])} is image '{actual[i]}' in {what} but "
                f"'{given[i]}' in the decisions; these decisions belong to another table or run."
            )
    return found
