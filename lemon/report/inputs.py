"""What the report reads of a run folder: scores.csv, args/hparams/metrics.json, neighbours.npz, and
what follows from them (the flag rule, the flagged pairs, class names)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon.core.errors import LemonError
from lemon.core.io import read_json

log = logging.getLogger(__name__)


def read_run(run_dir: Path) -> tuple[dict, dict, dict, pd.DataFrame]:
    if not run_dir.is_dir():
        raise LemonError(
            f"Run folder {run_dir} does not exist; pass the --output_dir of a run_lemon run."
        )
    scores_path = run_dir / "scores.csv"
    if not scores_path.is_file():
        raise LemonError(
            f"{run_dir} has no scores.csv: not a run_lemon output folder, or the run did not "
            "get as far as scoring (see its log.txt)."
        )

    def read(name):
        return read_json(run_dir / name) if (run_dir / name).is_file() else {}

    try:
        scores = pd.read_csv(scores_path, keep_default_na=False, na_values=[""])
        args, hparams, metrics = read("args.json"), read("hparams.json"), read("metrics.json")
    except (ValueError, OSError) as err:
        raise LemonError(
            f"Cannot read the outputs in {run_dir} ({err}); re-run it with --overwrite."
        ) from err
    missing = {"split", "score"} - set(scores.columns)
    if missing:
        raise LemonError(
            f"{scores_path} lacks column(s) {', '.join(sorted(missing))}; re-run the run with "
            "--overwrite."
        )
    return args, hparams, metrics, scores


def flag_threshold(hparams: dict) -> tuple[str, float | None]:
    """The rule that flags samples and its threshold: hparams.json's ``flag_rule`` (written by the
    pipeline); for older runs without it, ``optimal`` when the run had labels, else ``heuristic``."""
    thresholds = hparams.get("thresholds") or {}
    rule = hparams.get("flag_rule")
    for name in (rule,) if rule is not None and rule in thresholds else ("optimal", "heuristic"):
        if thresholds.get(name) is not None:
            return name, float(thresholds[name])
    return "none", None


def neighbour_rows(run_dir: Path, scores: pd.DataFrame, args: dict) -> dict[str, np.ndarray]:
    """``{split}_idx_{n,m}`` as rows of ``scores`` (-1: not in scores.csv); {} when unavailable."""
    path = run_dir / "neighbours.npz"
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # EOFError: an empty file
        log.warning(
            "%s is not a readable .npz (%s: %s); the neighbour panels are left out of the report "
            "(re-run the run with --overwrite to rewrite it)",
            path,
            type(err).__name__,
            str(err).split(". ")[0] or "empty",
        )
        return {}
    train_rows = np.flatnonzero(scores["split"].to_numpy() == "train")
    reference = arrays.pop("reference_index", None)
    if reference is None and len(train_rows) <= int(args.get("compr_dataset_size_limit") or 0):
        reference = np.arange(
            len(train_rows)
        )  # uncapped: the reference set is the whole train split
    if reference is None or len(train_rows) == 0 or len(reference) == 0:
        log.warning(
            "%s: neighbour ids cannot be mapped to train rows (train not scored or capped reference "
            "without reference_index); neighbours are left out of the report",
            path,
        )
        return {}
    ref_to_row = np.full(len(reference), -1, dtype=np.int64)
    ok = reference < len(train_rows)
    ref_to_row[ok] = train_rows[reference[ok]]
    out = {}
    for key, ids in arrays.items():
        if key.endswith(("_idx_n", "_idx_m")):
            valid = (ids >= 0) & (ids < len(ref_to_row))
            out[key] = np.where(valid, ref_to_row[np.where(valid, ids, 0)], -1)
    return out


def class_names(scores: pd.DataFrame, prompt: str) -> dict[Any, str]:
    """Class id -> name, read off the prompts of samples observed with that class (classification)."""
    if "observed_label" not in scores or "text" not in scores:
        return {}
    pairs = scores.drop_duplicates("observed_label")[["observed_label", "text"]]
    if not pd.api.types.is_integer_dtype(pairs["observed_label"]):
        return {}

    def strip(t):
        return t[len(prompt) :] if prompt and str(t).startswith(prompt) else str(t)

    return {label: strip(text) for label, text in zip(pairs["observed_label"], pairs["text"])}


def flagged_frame(scores: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """The samples scores.csv flags (its ``flagged`` column; ``score >= threshold`` for runs without
    it), most suspicious first, with their rank."""
    if "flagged" in scores:
        mask = scores["flagged"].astype(str).str.lower().isin(("true", "1")).to_numpy()
    elif threshold is None:
        return scores.iloc[0:0]
    else:
        mask = (scores["score"] >= threshold).to_numpy()
    flagged = scores[mask].sort_values("score", ascending=False, kind="stable")
    flagged.insert(0, "rank", np.arange(1, len(flagged) + 1))
    return flagged
