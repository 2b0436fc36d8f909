"""The review queue of the report: every flagged pair and a random audit sample, as files the page loads
on demand.

Two lists ("views") are reviewed: ``flagged`` (every pair scores.csv flags, most suspicious first) and
``audit`` (a uniform random sample of all scored pairs, flagged or not, drawn with the run's seed: the
share of them a reviewer judges wrong estimates the noise rate without the detector's bias). The page
holds neither: ``report_files/index.js`` lists each view's pairs (position in scores.csv, score, class) for
paging and filtering, and ``report_files/<view>/NNNNN.js`` holds what the cards of ``CHUNK`` consecutive
pairs show. They are ``<script>`` files because a ``file://`` page may not ``fetch()`` its neighbours.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: pairs per data file: a page of 25 cards loads at most one file unfiltered (about 50 KB); 1,000 files
#: hold 100,000 flagged pairs
CHUNK = 100
#: mixed into the run's seed so the audit sample is its own draw
AUDIT_PURPOSE = 0xA0D17
#: scores.csv columns of the suggested fix (another stage writes them) and of its strength, by task
SUGGESTION = {
    "classification": ("suggested_label", "suggestion_confidence"),
    "captioning": ("suggested_text", "suggestion_similarity"),
}
TERMS = ("d_mm", "s_n", "s_m")
#: columns that are not score components, even when numeric
NOT_COMPONENTS = frozenset(
    {*TERMS, "score", "idx", "row", "is_mislabel", "clean_label", "observed_label", "flagged"}
    | {c for pair in SUGGESTION.values() for c in pair}
)


def audit_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of ``min(size, n)`` of ``n`` scored pairs drawn uniformly without replacement.

    The first ``size`` of one seeded permutation: a larger sample of the same run holds the smaller one,
    so pairs audited before a report is written again with a larger ``--audit_size`` stay audited.
    """
    order = np.random.default_rng([int(seed), AUDIT_PURPOSE]).permutation(n)
    return np.sort(order[: min(size, n)])


@dataclass
class Pairs:
    """Per scores.csv row, what a card shows, as plain lists (fast to index while writing the data files).

    ``shown`` is the observed label as the user names it (class name) or the caption; ``prefill`` the
    corrected field's first value (the suggestion when scores.csv has one, else ``shown``).
    """

    task: str
    split: list
    idx: list
    row: list
    image: list
    shown: list
    clean: list | None
    mislabel: list | None
    score: list
    parts: dict[str, list]
    extra: dict[str, list]
    flagged: np.ndarray
    rank: np.ndarray
    audit: np.ndarray
    suggestion: list | None
    strength: list | None
    prefill: list


def _as_list(values: pd.Series) -> list:
    """Values with NaN/NA as None (JSON null)."""
    return values.astype(object).where(values.notna(), None).tolist()


def _rounded(values: pd.Series) -> list:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return [None if not np.isfinite(x) else x for x in np.round(v, 6).tolist()]


def _name(values: pd.Series, names: dict) -> pd.Series:
    """Class ids as their names (a value already a name, or not a known id, stays as it is)."""
    if not names:
        return values.astype(object)
    by_text = {str(k): v for k, v in names.items()}
    known = set(names.values())
    return values.map(lambda v: v if v in known else by_text.get(str(v), v) if pd.notna(v) else v)


def build_pairs(
    scores: pd.DataFrame,
    names: dict,
    hparams: dict,
    flagged: np.ndarray,
    ranks: np.ndarray,
    audit: np.ndarray,
) -> Pairs:
    """What each row's card shows; ``flagged``/``ranks``/``audit`` are per-row arrays (rank 0: unflagged)."""
    task = "classification" if names else "captioning"
    if names:
        observed = _name(scores["observed_label"], names)
    else:
        observed = scores["text"] if "text" in scores else scores["observed_label"]
    weights = {
        "d_mm": 0.0 if hparams.get("ablation") == "d1" else 1.0,
        "s_n": float(hparams.get("beta", 1.0)),
        "s_m": float(hparams.get("gamma", 1.0)),
    }
    parts = {t: _rounded(weights[t] * scores[t]) for t in TERMS if t in scores}
    extra = {
        c: _rounded(scores[c])
        for c in scores.columns
        if c not in NOT_COMPONENTS and pd.api.types.is_float_dtype(scores[c])
    }
    label, strength = SUGGESTION[task]
    shown = ["" if v is None else str(v) for v in _as_list(observed)]
    suggestion = (
        [None if v is None else str(v) for v in _as_list(_name(scores[label], names))]
        if label in scores
        else None
    )
    mislabel = (
        pd.to_numeric(scores["is_mislabel"], errors="coerce") if "is_mislabel" in scores else None
    )
    clean = _name(scores["clean_label"], names) if "clean_label" in scores else None
    return Pairs(
        task=task,
        split=scores["split"].astype(str).tolist(),
        idx=scores["idx"].tolist() if "idx" in scores else list(range(len(scores))),
        row=_as_list(scores["row"] if "row" in scores else scores["idx"]),
        image=_as_list(scores["image"]) if "image" in scores else [None] * len(scores),
        shown=shown,
        clean=_as_list(clean) if clean is not None else None,
        mislabel=[None if pd.isna(v) else int(v) for v in mislabel]
        if mislabel is not None
        else None,
        score=_rounded(scores["score"]),
        parts=parts,
        extra=extra,
        flagged=flagged,
        rank=ranks,
        audit=audit,
        suggestion=suggestion,
        strength=_rounded(scores[strength]) if strength in scores else None,
        prefill=shown
        if suggestion is None
        else [t if g is None else g for g, t in zip(suggestion, shown)],
    )


def neighbour_positions(
    neighbours: dict[str, np.ndarray], scores: pd.DataFrame, positions: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Side ('n': image look-alikes, 'm': text look-alikes) -> (len(positions), k) scores.csv rows (-1: none)."""
    out = {s: np.full((len(positions), k), -1, dtype=np.int64) for s in ("n", "m")}
    if not neighbours or k == 0:
        return out
    split = scores["split"].to_numpy()
    within = scores.groupby("split", sort=False).cumcount().to_numpy()
    for side, table in out.items():
        for name in np.unique(split[positions]):
            ids = neighbours.get(f"{name}_idx_{side}")
            if ids is None:
                continue
            hit = split[positions] == name
            got = ids[within[positions[hit]], :k]
            table[hit, : got.shape[1]] = got
    return out


def _card(p: int, pairs: Pairs, nbrs: dict[str, np.ndarray], j: int, urls: dict) -> dict[str, Any]:
    """One card's data (short keys: these files hold up to 100,000 of them)."""
    card: dict[str, Any] = {
        "p": p,
        "s": pairs.split[p],
        "i": pairs.idx[p],
        "r": pairs.row[p],
        "f": pairs.image[p],
        "u": urls.get(p),
        "t": pairs.shown[p],
        "v": pairs.prefill[p],
        "sc": pairs.score[p],
        "fl": bool(pairs.flagged[p]),
        "k": int(pairs.rank[p]),
        "a": bool(pairs.audit[p]),
        "terms": {t: v[p] for t, v in pairs.parts.items() if v[p] is not None},
        "x": {c: v[p] for c, v in pairs.extra.items() if v[p] is not None},
    }
    if pairs.mislabel is not None and pairs.mislabel[p] is not None:
        card["e"] = pairs.mislabel[p]
        card["c"] = pairs.clean[p] if pairs.clean is not None else None
    if pairs.suggestion is not None and pairs.suggestion[p] is not None:
        card["g"] = pairs.suggestion[p]
        card["gs"] = pairs.strength[p] if pairs.strength is not None else None
    for side, table in nbrs.items():
        ids = table[j][table[j] >= 0]
        if len(ids):
            card[side] = [[pairs.shown[q], urls.get(int(q))] for q in ids]
    return card


def _shorten(urls: dict[int, str | None]) -> tuple[str, dict[int, str | None]]:
    """The folder URL the image files share, and each URL with it replaced by ``~`` (the data files
    repeat up to 11 URLs a pair: this keeps them short); sidecar URLs stay as they are."""
    files = [u for u in urls.values() if u is not None and u.startswith("file://")]
    if not files:
        return "", urls
    base = os.path.commonprefix(files)  # noqa: RUF071 -- URL strings, cut at a '/' below
    base = base[: base.rfind("/") + 1]
    cut = len(base)
    return base, {
        p: "~" + u[cut:] if u is not None and u.startswith(base) and base else u
        for p, u in urls.items()
    }


def write_queue(
    folder: Path,
    views: dict[str, np.ndarray],
    pairs: Pairs,
    neighbours: dict[str, np.ndarray],
    scores: pd.DataFrame,
    k: int,
    links,
) -> dict[str, Any]:
    """Write ``index.js`` and the per-view data files into ``folder``; returns what the page needs to
    know about them (counts, class list, image counts).

    ``views`` maps a view name to scores.csv positions in the order the view lists them; ``links`` gives
    image URLs (:class:`lemon.report.images.ImageLinks`, or None without an image column).
    """
    text_side = pairs.task == "captioning" and links is not None  # class labels: texts all match
    nbrs = {v: neighbour_positions(neighbours, scores, pos, k) for v, pos in views.items()}
    if not text_side:
        for table in nbrs.values():
            table.pop("m")
    wanted = [*np.concatenate([*views.values(), np.zeros(0, dtype=np.int64)])]
    for table in nbrs.values():
        for ids in table.values():
            wanted.extend(ids[ids >= 0].tolist())
    urls = links.urls(wanted) if links is not None else {}
    shown_pos = np.unique(np.concatenate([*views.values(), np.zeros(0, dtype=np.int64)]))
    found = sum(urls.get(int(p)) is not None for p in shown_pos)
    base, urls = _shorten(urls)
    classes = sorted({pairs.shown[p] for p in shown_pos}) if pairs.task == "classification" else []
    class_id = {c: i for i, c in enumerate(classes)}
    index = {}
    for view, positions in views.items():
        folder.joinpath(view).mkdir(parents=True, exist_ok=True)
        entry = {
            "pos": positions.tolist(),
            "score": [pairs.score[p] for p in positions],
        }
        if classes:
            entry["cls"] = [class_id[pairs.shown[p]] for p in positions]
        index[view] = entry
        for start in range(0, len(positions), CHUNK):
            cards = [
                _card(int(p), pairs, nbrs[view], j, urls)
                for j, p in enumerate(positions[start : start + CHUNK], start=start)
            ]
            text = json.dumps(cards, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            folder.joinpath(view, f"{start // CHUNK:05d}.js").write_text(
                f'LEMON_CHUNK("{view}",{start // CHUNK},{text});\n', encoding="utf-8"
            )
    index_text = json.dumps(index, separators=(",", ":"), allow_nan=False)
    folder.joinpath("index.js").write_text(f"window.LEMON_INDEX={index_text};\n", encoding="utf-8")
    return {
        "classes": classes,
        "counts": {v: len(p) for v, p in views.items()},
        "images": (found, len(shown_pos) - found) if links is not None else (0, 0),
        "url_base": base,
    }
