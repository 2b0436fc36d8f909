"""Which train pairs a downstream model trains on: a finished run's train scores and a filter rule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon.core.errors import LemonError
from lemon.core.io import DONE


@dataclass
class ScoredRun:
    """A finished run_lemon run: its folder, arguments, train scores and flagging threshold.

    train : the train rows of scores.csv (columns idx, text, score, is_mislabel, ...), by idx
    threshold : the score at and above which the run flags a pair (its flag rule's val threshold)
    """

    run_dir: Path
    args: dict[str, Any]
    train: pd.DataFrame
    threshold: float | None


def read_scored_run(path: str | Path) -> ScoredRun:
    """The run at ``path`` (its folder or its scores.csv); one-line errors for anything unusable."""
    path = Path(path).expanduser()
    run_dir = path.parent if path.name == "scores.csv" else path
    if not (run_dir / DONE).is_file():
        raise LemonError(
            f"--scores {path}: not a finished run_lemon run (no '{DONE}' marker in {run_dir}); "
            "point it at a run folder that run_lemon completed."
        )
    try:
        args = json.loads((run_dir / "args.json").read_text(encoding="utf-8"))
        hparams = json.loads((run_dir / "hparams.json").read_text(encoding="utf-8"))
        frame = pd.read_csv(run_dir / "scores.csv", keep_default_na=False)
    except (OSError, ValueError) as err:
        raise LemonError(f"--scores {run_dir}: cannot read the run's files ({err}).") from None
    missing = {"split", "idx", "score", "text"} - set(frame.columns)
    if missing:
        raise LemonError(
            f"{run_dir}/scores.csv lacks columns {sorted(missing)}: not a run's scores."
        )
    train = frame[frame["split"] == "train"].sort_values("idx").reset_index(drop=True)
    if train.empty:
        raise LemonError(
            f"{run_dir}/scores.csv has no train rows (was the run made with --skip_train?); "
            "score the train split to filter it."
        )
    rule = hparams.get("flag_rule")
    threshold = hparams.get("thresholds", {}).get(rule) if rule else None
    return ScoredRun(run_dir, args, train, None if threshold is None else float(threshold))


def kept_rows(
    run: ScoredRun, rule: str, fraction: float, keep_n: int | None, seed: int
) -> np.ndarray:
    """Sorted train ``idx`` values to train on under ``rule`` (see DownstreamConfig.filter).

    Rankings break ties by idx, so the same scores always keep the same pairs.
    """
    idx = run.train["idx"].to_numpy(np.int64)
    score = pd.to_numeric(run.train["score"]).to_numpy(np.float64)
    n = len(idx)
    if rule == "none":
        return idx
    if rule == "random":
        drop = np.random.default_rng([seed, 7]).choice(n, int(round(fraction * n)), replace=False)
        return np.sort(np.delete(idx, drop))
    if rule == "flagged":
        if run.threshold is None:
            raise LemonError(
                f"{run.run_dir}/hparams.json has no flagging threshold; use --filter drop_top."
            )
        kept = idx[score < run.threshold]
    else:
        if rule == "drop_top":
            n_keep = n - int(round(fraction * n))
        elif keep_n is None:  # DownstreamConfig.validate refuses this
            raise LemonError("--filter keep_n needs --keep_n (how many train pairs to keep).")
        else:
            n_keep = keep_n
        if not 1 <= n_keep <= n:
            raise LemonError(f"the filter keeps {n_keep} pairs; the run has {n} train pairs.")
        kept = idx[np.lexsort((idx, score))[:n_keep]]  # lowest scores first, ties by idx
    if not len(kept):
        raise LemonError(f"--filter {rule} keeps no train pair of {run.run_dir}.")
    return np.sort(kept)
