"""Label and caption cells of a user's table as text, exactly as written, and the choices they leave open.

A cell becomes one string: a caption as written ('None', 'NaN' and 'null' are words, not missing
values); a list or array cell with one element (a parquet ``list<string>`` column) its element; bytes
decoded as UTF-8; a whole-number float (an integer column with gaps) without its '.0'. A cell holding
several values (a multi-label row) is an error naming the row: a pair has one label.

Class labels that differ only in case, spacing or leading zeros (``cat``, ``CAT``, ``cat `` and ``3``,
``03``) are spellings of one class, or not: :func:`merge_variants` merges them into their most frequent
spelling by default and says so in one line with the counts; ``--label_variants keep`` keeps them apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from lemon.core.errors import LemonError

log = logging.getLogger(__name__)
LABEL_VARIANTS = ("merge", "keep")
#: what to do with an image that a table or folder gives two or more different class labels
CONFLICTING_LABELS = ("keep", "first", "drop")


def _one(value: Any, row: int, what: str) -> Any:
    """The single value of a list/array cell (None when empty)."""
    items = list(value)
    if len(items) > 1:
        shown = [str(v) for v in items[:4]]
        raise LemonError(
            f"{what}: row {row} holds {len(items)} values {shown}; a pair has one label or caption: "
            "give each its own row (pandas: df.explode(column)) or keep the one that applies."
        )
    return items[0] if items else None


def cell_text(values: Sequence[Any] | np.ndarray, what: str) -> np.ndarray:
    """(n,) object array: each cell as a string, None where it is missing or blank (see the module)."""
    out = np.empty(len(values), dtype=object)
    for row, value in enumerate(values):  # cells of mixed kinds: one pass in Python at load
        if isinstance(value, (list, tuple, np.ndarray)):
            value = _one(value, row, what)
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise LemonError(
                    f"{what}: row {row} holds bytes that are not UTF-8 text ({bytes(value)[:20]!r}); "
                    "store labels and captions as text."
                ) from None
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            out[row] = None
            continue
        if isinstance(value, (bool, np.bool_)):
            text = str(bool(value))
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            text = str(int(value))
        elif isinstance(value, np.generic):
            text = str(value.item())
        else:
            text = str(value)
        out[row] = text if text.strip() else None
    return out


def is_number(text: str) -> bool:
    """Whether a label reads as a whole number ('3', '03', '-1', '3.0')."""
    t = text.strip()
    if t.lstrip("-").isdigit():
        return True
    try:
        return float(t).is_integer()
    except ValueError:
        return False


def variant_key(text: str) -> str:
    """What spellings of one label share: the number for numbers ('03', '3.0' -> '3'), else the words
    case-folded with runs of spaces made one."""
    if is_number(text):
        return str(int(float(text.strip())))
    return " ".join(text.split()).casefold()


def merge_variants(labels: np.ndarray, mode: str, what: str) -> np.ndarray:
    """Labels (stripped strings) with spellings of one class merged into the most frequent one (ties:
    the first in sorted order) when ``mode`` is 'merge'; one warning line with the counts either way."""
    if mode not in LABEL_VARIANTS:
        raise LemonError(
            f"Unknown label_variants '{mode}'. Available: {', '.join(LABEL_VARIANTS)}."
        )
    uniq, inverse, counts = np.unique(
        np.asarray(labels, dtype=str), return_inverse=True, return_counts=True
    )
    keys = np.asarray([variant_key(u) for u in uniq], dtype=object)
    ukeys, group = np.unique(keys.astype(str), return_inverse=True)
    if len(ukeys) == len(uniq):
        if mode == "keep":
            return np.asarray(labels, dtype=object)
        return np.asarray([str(u).strip() for u in uniq], dtype=object)[inverse.reshape(-1)]
    # per group: the spelling with the most rows; of equal counts the plain one ('cat', '1'), then the
    # first in sorted order
    plain = np.asarray([u == k for u, k in zip(uniq, keys)], dtype=bool)
    order = np.lexsort((np.arange(len(uniq)), ~plain, -counts, group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    canonical = np.empty(len(ukeys), dtype=object)
    canonical[group[order][first]] = uniq[order][first]
    merged = uniq != canonical[group]
    n_rows = int(counts[merged].sum())
    examples = [f"'{u}' -> '{canonical[g]}'" for u, g in zip(uniq[merged], group[merged])][:3]
    if mode == "keep":
        log.warning(
            "%s: %d label spelling(s) differ only in case, spacing or leading zeros from another "
            "label (%d rows, e.g. %s); they are kept as separate classes (--label_variants keep); "
            "--label_variants merge makes them one class.",
            what,
            int(merged.sum()),
            n_rows,
            ", ".join(examples),
        )
        return np.asarray(labels, dtype=object)
    log.warning(
        "%s: merged %d label spelling(s) that differ only in case, spacing or leading zeros into "
        "%d classes (%d rows relabelled, e.g. %s); pass --label_variants keep to keep them apart.",
        what,
        int(merged.sum()),
        int(len(np.unique(group[merged]))),
        n_rows,
        ", ".join(examples),
    )
    canonical = np.asarray([str(c).strip() for c in canonical], dtype=object)
    return canonical[group][inverse.reshape(-1)]
