"""``run_lemon --reviewed decisions.csv``: a person's review decisions as the run's labels.

The decisions are matched to the run's pairs (by scores.csv's ``row``, ``split`` and ``image``) and become
:class:`lemon.method.reviewed.ReviewedLabels`; LEMoN_OPT then selects on them, the flag threshold maximises
their run-wide F1, and the audited pairs give the noise rate (see :mod:`lemon.method.reviewed`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lemon.data.decisions import match_decisions, read_decisions
from lemon.data.features import Features
from lemon.method.reviewed import ReviewedLabels

log = logging.getLogger("lemon")


def run_keys(
    features: Features, splits: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(split, row, image) of every pair of ``splits``, in order, as scores.csv names them (``row``: the
    source table's row, else the index within the split; ``image``: None when a split has none)."""
    parts = [features.splits[s] for s in splits]
    split = np.concatenate([np.full(len(p), s, dtype=object) for s, p in zip(splits, parts)])
    row = np.concatenate(
        [np.asarray(p.source_rows if p.source_rows is not None else p.ids) for p in parts]
    )
    refs = [p.image_refs for p in parts if p.image_refs is not None]
    image = None
    if len(refs) == len(parts):
        image = np.concatenate([np.asarray(list(r), dtype=object) for r in refs])
    return split, row, image


def load_reviewed(path: str | Path, features: Features, splits: Sequence[str]) -> ReviewedLabels:
    """The decisions of ``path`` as labels of the run's scored ``splits`` (pairs of another split, e.g.
    train under --skip_train, are left out with a warning; 'unsure' ones are counted, not used)."""
    decisions = read_decisions(path)
    names = list(features.splits)
    split, row, image = run_keys(features, names)
    found = match_decisions(decisions, split, row, image, str(path), "this run's data")
    sizes = np.asarray([len(features.splits[s]) for s in names])
    offsets = dict(zip(names, np.concatenate([[0], np.cumsum(sizes)[:-1]])))
    of_split = split[found]
    scored = np.isin(of_split, list(splits))
    if not scored.all():
        log.warning(
            "--reviewed: %d decision(s) are about pairs of split(s) %s, which this run does not "
            "score; they are left out.",
            int((~scored).sum()),
            ", ".join(sorted(set(of_split[~scored]))),
        )
    unsure = decisions["decision"].to_numpy() == "unsure"
    audit = decisions["audit"].to_numpy(dtype=bool)
    wrong = decisions["decision"].to_numpy() == "wrong"
    keep = scored & ~unsure
    rows, truth, audited = {}, {}, {}
    for s in splits:
        mine = np.flatnonzero(keep & (of_split == s))
        local = found[mine] - offsets[s]
        order = np.argsort(local, kind="stable")
        rows[s], truth[s], audited[s] = local[order], wrong[mine][order], audit[mine][order]
    labels = ReviewedLabels(
        rows,
        truth,
        audited,
        population=int(sum(len(features.splits[s]) for s in splits)),
        n_unsure=int((scored & unsure).sum()),
        n_unsure_audit=int((scored & unsure & audit).sum()),
    )
    info = labels.info()
    log.info(
        "--reviewed %s: %d wrong, %d right, %d unsure; %d audited",
        path,
        info["reviewed_wrong"],
        info["reviewed_right"],
        info["reviewed_unsure"],
        info["audited"],
    )
    if not info["audited"]:
        log.warning(
            "--reviewed: no decision comes from the audit sample (audit = 1), so the noise rate stays "
            "the label-free estimate and the threshold is chosen on the reviewed pairs alone (they "
            "over-represent the top of the scores); review some of the page's audit pairs too."
        )
    if not labels.usable:
        y = labels.y
        what = (
            f"all {len(y)} decisions used are '{'wrong' if y.any() else 'right'}'"
            if len(y)
            else ("no decision used is 'wrong' or 'right'")
        )
        log.warning(
            "--reviewed: %s, so no threshold can be chosen on them; hyper-parameters and the flag "
            "threshold are chosen as without --reviewed.",
            what,
        )
    return labels
