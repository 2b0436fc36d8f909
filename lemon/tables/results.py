"""Read finished runs of a sweep into one DataFrame (one row per run), without unpickling anything.

A run folder is any folder below the sweep root holding a run output (``args.json``, ``log.txt``,
``metrics.json``, ``scores.csv``, ``job_id`` or ``done``); it counts as finished only when ``done`` exists
(written last, so a killed job never looks finished). For each finished run the sibling JSON files are read:

- ``args.json``: every RunConfig field becomes a column, with the values of its ``resolved`` block applied
  (so ``knn_k`` is 30 for ``--lemon_fix`` and ``noise_level`` 0.4 when it was left to its default);
- ``hparams.json`` (optional): selected hyper-parameters as ``hp/<name>``, thresholds as
  ``hp/threshold_<name>``;
- ``metrics.json``: flat ``split/metric`` keys, as written, and the run-level :data:`RUN_METRICS` as
  ``all/<metric>``. It must hold the keys the paper tables read
  (:data:`REQUIRED_METRICS`: ``val/n`` and ``test/n``, plus :data:`TABLE_METRICS` and :data:`OBJECTIVE` when
  the run had labels, i.e. wrote a ``*/prevalence``); a partial file makes the run corrupt, not a row.

Derived columns: ``run_dir``, ``experiment`` (first folder below the root when runs sit at
``<root>/<experiment>/<hash>/``), ``noise_type`` (the dataset's default filled in) and ``method`` (see
:func:`method_names`). Config columns never contain ``/``; result columns always do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon.core.errors import LemonError
from lemon.core.io import DONE
from lemon.data import default_noise_type

log = logging.getLogger(__name__)
RUN_MARKERS = ("args.json", "log.txt", "metrics.json", "scores.csv", "job_id", DONE)
META_COLUMNS = ("experiment", "run_dir", "method")
TABLE_METRICS = (
    "test/AUROC",
    "test/AUPRC",
    "test/F1_optimal",
)  # what lemon.tables.aggregate reports
OBJECTIVE = "val/F1_optimal"  # what lemon.tables.aggregate selects k and distance by
REQUIRED_METRICS = ("val/n", "test/n")  # written by every run_lemon run, with or without labels
DOWNSTREAM_REQUIRED = ("train/n", "train/n_kept", "test/n")  # written by every lemon.downstream run
RUN_METRICS = (  # metrics of the whole run, not of one split
    "estimated_noise_rate",
    "estimated_noise_rate_low",
    "estimated_noise_rate_high",
)


@dataclass
class LoadReport:
    """What :func:`load_records` found: counts, and the folders it could not use (with reasons)."""

    root: Path
    exists: bool = True
    n_runs: int = 0
    loaded: int = 0
    incomplete: list[Path] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    expected: int = 0  # runs in the experiments' grids (0: grids not consulted)
    not_launched: int = 0  # of those, runs without a folder

    @property
    def complete(self) -> bool:
        """True when every run folder found was loaded and no run of the grid is missing."""
        return self.loaded == self.n_runs and not self.not_launched

    def only(self, experiments: Collection[str], loaded: int) -> LoadReport:
        """This report restricted to the runs of ``experiments`` (``loaded`` of them were loaded)."""
        incomplete = [p for p in self.incomplete if experiment_of(self.root, p) in experiments]
        corrupt = [(p, r) for p, r in self.corrupt if experiment_of(self.root, p) in experiments]
        return replace(
            self,
            n_runs=loaded + len(incomplete) + len(corrupt),
            loaded=loaded,
            incomplete=incomplete,
            corrupt=corrupt,
        )

    def summary(self) -> str:
        """One line, e.g. ``96 run folders under R: 80 loaded, 12 of 96 runs incomplete, 4 corrupt``."""
        if not self.exists:
            return (
                f"Sweep folder {self.root} does not exist; point LEMON_SWEEP_ROOT (or --output_root) "
                "at the folder a sweep wrote to."
            )
        if self.n_runs == 0 and not self.not_launched:
            return (
                f"No run folders under {self.root} (nothing with args.json / metrics.json / done); "
                f"launch a sweep there first (python sweep.py launch --output_root {self.root} ...)."
            )
        parts = [f"{self.loaded} loaded"]
        if self.incomplete:
            parts.append(
                f"{len(self.incomplete)} of {self.n_runs} runs incomplete (no '{DONE}' marker; "
                "finish them with sweep.py launch)"
            )
        if self.corrupt:
            parts.append(f"{len(self.corrupt)} corrupt (skipped)")
        if self.not_launched:
            parts.append(
                f"{self.not_launched} of {self.expected} runs not launched (no run folder; start "
                "them with sweep.py launch)"
            )
        return f"{self.n_runs} run folders under {self.root}: " + ", ".join(parts) + "."

    def details(self) -> str:
        """The summary plus one line per corrupt run (path and reason)."""
        lines = [self.summary()]
        lines += [f"  corrupt: {path}: {reason}" for path, reason in self.corrupt]
        return "\n".join(lines)


def find_run_dirs(root: Path) -> list[Path]:
    """Sorted folders below ``root`` holding a run output; hidden folders (``.submitit``) are skipped."""
    found: set[Path] = set()
    for marker in RUN_MARKERS:
        for path in root.rglob(marker):
            rel = path.relative_to(root).parts
            if path.is_file() and not any(p.startswith(".") for p in rel[:-1]):
                found.add(path.parent)
    return sorted(found)


def experiment_of(root: Path, run_dir: Path) -> str:
    """The experiment folder of ``run_dir`` (``<root>/<experiment>/<hash>``); '' for a run in ``root``."""
    rel = Path(run_dir).relative_to(root).parts
    return rel[0] if len(rel) >= 2 else ""


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; raises ValueError with a short reason otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path.name} is unreadable ({err})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        reason = f"{path.name} is not valid JSON ({err.msg} at line {err.lineno}; truncated?)"
        raise ValueError(reason) from None
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path.name} is not a non-empty JSON object")
    return obj


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def read_run(run_dir: Path) -> dict[str, Any]:
    """One finished run as a flat record; raises ValueError (reason) when its files are unusable."""
    args = _read_json_object(run_dir / "args.json")
    metrics = _read_json_object(run_dir / "metrics.json")
    bad = [
        k for k, v in metrics.items() if ("/" not in k and k not in RUN_METRICS) or not _scalar(v)
    ]
    if bad:
        raise ValueError(f"metrics.json is not flat 'split/metric' -> number (e.g. key {bad[0]!r})")
    missing = missing_metrics(metrics)
    if missing:
        raise ValueError(
            f"metrics.json is partial: no {', '.join(missing)} (the tables need them); delete "
            "the run folder and run it again (sweep.py launch)"
        )
    record = {k: v for k, v in args.items() if _scalar(v) and "/" not in k}
    resolved = args.get("resolved")
    if isinstance(resolved, dict):
        record.update({k: v for k, v in resolved.items() if _scalar(v)})
    if (run_dir / "hparams.json").exists():
        hparams = _read_json_object(run_dir / "hparams.json")
        for key, value in hparams.items():
            if key == "thresholds" and isinstance(value, dict):
                record.update({f"hp/threshold_{k}": v for k, v in value.items()})
            elif _scalar(value):
                record[f"hp/{key}"] = value
    record.update({k if "/" in k else f"all/{k}": v for k, v in metrics.items()})
    return record


def missing_metrics(metrics: dict[str, Any]) -> list[str]:
    """Keys the tables need that ``metrics`` lacks (a null value is fine: e.g. AUROC of a one-class split).

    Every run writes ``val/n`` and ``test/n``; a run with labels (some ``*/prevalence`` key) also writes
    :data:`TABLE_METRICS` and :data:`OBJECTIVE`.
    """
    if "train/n_kept" in metrics:  # a downstream run (lemon.downstream)
        return [key for key in DOWNSTREAM_REQUIRED if key not in metrics]
    labelled = any(key.endswith("/prevalence") for key in metrics)
    needed = REQUIRED_METRICS + ((OBJECTIVE, *TABLE_METRICS) if labelled else ())
    return [key for key in needed if key not in metrics]


#: the run fields :func:`method_names` folds into the method name
METHOD_FIELDS = (
    "scorer",
    "lemon_fix",
    "skip_hparam_optim",
    "ablation",
    "normalize_d1",
    "use_discrete_for_text",
    "legacy_discrete_weighting",
    "temperature",
)


def method_names(df: pd.DataFrame) -> pd.Series:
    """The method of each run: the scorer, LEMoN as ``lemon_opt`` / ``lemon_fix``, plus variant tags.

    ``lemon_opt:tau_1`` is an ablation; the ``multimodal_baseline`` ablation is the CLIP-similarity baseline
    and named ``clip_sim`` like that scorer (same score, so the two are one method); ``+norm_d1``,
    ``+discrete`` (``+discrete_legacy``) and ``(T=...)`` mark --normalize_d1, --use_discrete_for_text and a
    non-default --temperature.
    """

    def col(name, default):
        return df[name] if name in df else pd.Series(default, index=df.index)

    scorer = col("scorer", "lemon").fillna("lemon").astype(str)
    fix = col("lemon_fix", False).fillna(False).astype(bool)
    skip = col("skip_hparam_optim", False).fillna(False).astype(bool)
    lemon = np.where(fix, "lemon_fix", np.where(skip, "lemon_skip_optim", "lemon_opt"))
    method = pd.Series(np.where(scorer == "lemon", lemon, scorer), index=df.index, dtype=object)
    ablation = col("ablation", "none").fillna("none").astype(str)
    method = method.where(ablation == "none", method + ":" + ablation)
    method = method.where((scorer != "lemon") | (ablation != "multimodal_baseline"), "clip_sim")
    for flag, tag in (("normalize_d1", "+norm_d1"), ("use_discrete_for_text", "+discrete")):
        method = method.where(~col(flag, False).fillna(False).astype(bool), method + tag)
    legacy = col("legacy_discrete_weighting", False).fillna(False).astype(bool)
    method = method.where(~legacy, method + "_legacy")
    temp = pd.to_numeric(col("temperature", 1.0), errors="coerce").fillna(1.0)
    return method.where(temp == 1.0, method + temp.map(lambda t: f"(T={t:g})"))


def load_records(root: str | Path) -> tuple[pd.DataFrame, LoadReport]:
    """Every finished run below ``root`` as one row; incomplete and corrupt runs are counted, not loaded.

    Returns
    -------
    records : DataFrame, one row per finished run (empty, with the meta columns, when there is none)
    report : LoadReport with the counts and the path + reason of every skipped corrupt run

    Raises LemonError only when ``root`` is not a folder; everything below it is reported, never raised.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LemonError(
            f"Sweep folder {root} does not exist (or is not a folder); pass the --output_root "
            "the sweep wrote to (or set LEMON_SWEEP_ROOT)."
        )
    report = LoadReport(root)
    rows = []
    for run_dir in find_run_dirs(root):
        report.n_runs += 1
        if not (run_dir / DONE).is_file():
            report.incomplete.append(run_dir)
            continue
        try:
            record = read_run(run_dir)
        except ValueError as err:
            report.corrupt.append((run_dir, str(err)))
            log.debug(
                "skipping %s: %s", run_dir, err
            )  # reported once, by the caller (report.details())
            continue
        record["experiment"] = experiment_of(root, run_dir)
        record["run_dir"] = str(run_dir)
        rows.append(record)
    report.loaded = len(rows)
    if not rows:
        return pd.DataFrame(columns=list(META_COLUMNS)), report
    df = pd.DataFrame(rows)
    if "dataset" in df:
        real = df.get("real_dataset", pd.Series(False, index=df.index)).fillna(False).astype(bool)
        given = (
            df["noise_type"]
            if "noise_type" in df
            else pd.Series(None, index=df.index, dtype=object)
        )
        keys = pd.Series(list(zip(df["dataset"].astype(str), real)), index=df.index)
        defaults = {key: default_noise_type(*key) for key in set(keys)}  # one lookup per dataset
        df["noise_type"] = given.where(given.notna(), keys.map(defaults))
    df["method"] = method_names(df)
    first = [c for c in META_COLUMNS if c in df]
    return df[first + [c for c in df.columns if c not in first]], report
