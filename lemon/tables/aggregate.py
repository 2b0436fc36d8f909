"""Paper tables from a sweep's finished runs (Table 2/3 style), printed, as CSV and as LaTeX.

Usage:
    python sweep.py tables --output_root sweeps/               # every experiment below the root
    python sweep.py tables --output_root sweeps/ --experiment lemon_all --tables_dir tables/

Rules: runs are grouped by what they computed (dataset, noise type, noise level, method and any
other config field that varies in the sweep) — never by seed, k or distance. In each group the (k, distance)
pair with the highest mean validation F1 over seeds is selected, and the test metrics of that pair are
reported as mean ± std (sample std, ddof=1) over seeds, in %. Notebooks call only this module.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lemon.core.cli import command
from lemon.core.errors import LemonError
from lemon.core.flags import HelpfulParser
from lemon.core.io import atomic_write_csv, atomic_write_text
from lemon.core.registry import Registry
from lemon.method.hparams import ABLATIONS
from lemon.run.config import execution_fields
from lemon.tables.results import METHOD_FIELDS, OBJECTIVE, LoadReport, load_records
from lemon.tables.results import TABLE_METRICS as METRICS

log = logging.getLogger(__name__)
SEEDS = ("seed", "data_seed")
SELECTED = ("knn_k", "dist_type")
TABLE_KEYS = ("dataset", "noise_type", "noise_level")
# fields saying where / how a run executed, or folded into `method`: never table rows of their own
NOT_IDENTITY = execution_fields() | set(METHOD_FIELDS) | {"experiment", "run_dir", "method"}
#: relative to notebooks/: <repo>/runs, as in sweep.py --output_root runs
DEFAULT_SWEEP_ROOT = "../runs"


def sweep_root(default: str = DEFAULT_SWEEP_ROOT) -> Path:
    """The sweep folder the notebooks read: ``$LEMON_SWEEP_ROOT``, else ``default``."""
    return Path(os.environ.get("LEMON_SWEEP_ROOT") or default).expanduser()


def load_sweep(root: str | Path | None = None) -> tuple[pd.DataFrame, LoadReport]:
    """:func:`load_records` for notebooks: a missing folder gives an empty frame and says so in the report."""
    root = sweep_root() if root is None else Path(root).expanduser()
    try:
        return load_records(root)
    except LemonError:
        return pd.DataFrame(columns=["experiment", "run_dir", "method"]), LoadReport(
            root, exists=False
        )


def identity_columns(df: pd.DataFrame) -> list[str]:
    """Row keys of every table: dataset, noise type/level, then any other config field that varies."""
    keys = [c for c in TABLE_KEYS if c in df]
    skip = NOT_IDENTITY | set(SEEDS) | set(SELECTED) | set(keys)
    varying = [
        c for c in df.columns if "/" not in c and c not in skip and df[c].astype(str).nunique() > 1
    ]
    return keys + sorted(varying)


def _short(metric: str) -> str:
    return metric.split("/", 1)[-1]


def select_best(df: pd.DataFrame, objective: str = OBJECTIVE) -> tuple[pd.DataFrame, list[str]]:
    """Runs of the (k, distance) pair with the best mean ``objective`` over seeds, per group and method.

    Ties (and groups without the objective, e.g. no val labels) go to the smallest k, then distance name.
    Returns the selected runs (all their seeds) and notes on duplicated runs and uneven seed counts.
    """
    keys = identity_columns(df) + ["method"]
    cfg = [c for c in SELECTED if c in df]
    seeds = [c for c in SEEDS if c in df]
    notes = []
    dup = df.duplicated(keys + cfg + seeds)
    if dup.any():
        notes.append(
            f"{int(dup.sum())} runs repeat a configuration already loaded (another experiment "
            "folder); each configuration is counted once."
        )
        df = df[~dup]
    objective_col = df[objective] if objective in df else pd.Series(np.nan, index=df.index)
    work = df.assign(_objective=pd.to_numeric(objective_col, errors="coerce"))
    stats = work.groupby(keys + cfg, dropna=False)["_objective"].agg(["mean", "size"]).reset_index()
    for _, group in stats.groupby(keys, dropna=False):
        if group["size"].nunique() > 1:
            label = "/".join(str(v) for v in group.iloc[0][keys])
            counts = ", ".join(
                f"{'/'.join(str(r[c]) for c in cfg)}: {r['size']}" for _, r in group.iterrows()
            )
            notes.append(
                f"{label}: uneven seed counts per (k, distance) ({counts}); the selection compares "
                "means over different seeds."
            )
    order = stats.sort_values(
        ["mean", *cfg], ascending=[False] + [True] * len(cfg), na_position="last"
    )
    best = order.drop_duplicates(keys)[keys + cfg]
    return work.merge(best, on=keys + cfg, how="inner").drop(columns="_objective"), notes


def main_table(
    df: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    objective: str = OBJECTIVE,
    include_ablations: bool = False,
) -> pd.DataFrame:
    """Table 2/3: one row per group and method, selected k/distance, test metrics mean ± std in %.

    Columns: the identity keys, ``method``, ``k``, ``dist``, ``seeds`` (values averaged: the fewest of any
    metric, which is less than the runs selected where a metric is null), ``val F1`` (the selection
    objective, mean %), then ``<metric> mean`` / ``<metric> std`` per metric. ``attrs['notes']`` holds
    selection notes and metrics averaged over fewer runs than were selected. Ablation variants
    (``lemon_opt:<ablation>``) are left to :func:`ablation_table`.
    """
    missing = [m for m in metrics if m not in df]
    if missing:
        columns = [str(c) for c in df.columns]
        known = sorted(
            c for c in columns if c.startswith("test/") and not c.startswith(("test/n", "test/t"))
        )
        raise LemonError(
            f"Metric(s) {', '.join(missing)} not in any run's metrics.json; e.g. "
            f"{', '.join(known[:12])}{', ...' if len(known) > 12 else ''}."
        )
    if not include_ablations:
        df = df[~df["method"].str.contains(":", regex=False)]
    df = df.dropna(subset=[m for m in metrics if m in df], how="all")  # e.g. runs of other scripts
    if df.empty:
        return pd.DataFrame()
    selected, notes = select_best(df, objective)
    keys = identity_columns(df) + ["method"]
    values = selected[keys].assign(
        **{
            "val F1": 100 * pd.to_numeric(selected[objective], errors="coerce")
            if objective in selected
            else np.nan,
            **{m: 100 * pd.to_numeric(selected[m], errors="coerce") for m in metrics},
        }
    )
    grouped = values.groupby(keys, dropna=False, sort=True)
    out = selected.groupby(keys, dropna=False, sort=True).agg(
        k=("knn_k", "first"), dist=("dist_type", "first"), runs=("method", "size")
    )
    counts = grouped[list(metrics)].count()
    out["seeds"] = counts.min(axis=1)
    for group, row in counts.iterrows():
        runs = out.at[group, "runs"]  # how many runs were selected in this group
        short = {_short(str(m)): int(n) for m, n in row.items() if n < runs}
        if short:
            label = "/".join(str(v) for v in (group if isinstance(group, tuple) else (group,)))
            notes.append(
                f"{label}: {', '.join(f'{m} averages {n}' for m, n in short.items())} of "
                f"{runs!s} selected runs (null in the others' metrics.json)."
            )
    out = out.drop(columns="runs")
    out["val F1"] = grouped["val F1"].mean()
    for metric in metrics:
        out[f"{_short(metric)} mean"] = grouped[metric].mean()
        out[f"{_short(metric)} std"] = grouped[metric].std(ddof=1)
    out = out.reset_index()
    out.attrs["notes"] = notes
    return out


def hparam_drop_table(main: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """LEMoN_OPT vs LEMoN_FIX per group: both (mean ± std, %) and the drop OPT − FIX (mean)."""
    if main.empty or "method" not in main:
        return pd.DataFrame()
    keys = [
        c
        for c in main.columns
        if c not in ("method", "k", "dist", "seeds", "val F1") and not c.endswith((" mean", " std"))
    ]
    variant = main["method"].str.replace(r"^lemon_(opt|fix)", "", regex=True)
    frames = {}
    for name in ("opt", "fix"):
        chosen = main["method"].str.match(rf"^lemon_{name}(?![a-z_])")
        # variant[chosen], not variant: a column set on an empty frame would bring its own rows
        part = main[chosen].assign(variant=variant[chosen])
        cols = {
            f"{_short(m)} {s}": f"{_short(m)} {name.upper()} {s}"
            for m in metrics
            for s in ("mean", "std")
        }
        frames[name] = part[keys + ["variant", *cols]].rename(columns=cols)
    out = frames["opt"].merge(frames["fix"], on=keys + ["variant"], how="inner")
    for m in metrics:
        out[f"{_short(m)} drop"] = out[f"{_short(m)} OPT mean"] - out[f"{_short(m)} FIX mean"]
    if out.empty or (out["variant"] == "").all():
        out = out.drop(columns="variant")
    return out.reset_index(drop=True)


def noise_curves(main: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``main`` whose group was run at several noise levels, sorted by level (for line plots)."""
    if main.empty or "noise_level" not in main:
        return pd.DataFrame()
    keys = [c for c in ("dataset", "noise_type", "method") if c in main]
    levels = main.groupby(keys, dropna=False)["noise_level"].transform("nunique")
    return main[levels > 1].sort_values(keys + ["noise_level"]).reset_index(drop=True)


def ablation_table(
    df: pd.DataFrame, metrics: Sequence[str] = METRICS, objective: str = OBJECTIVE
) -> pd.DataFrame:
    """LEMoN_OPT and each ablation of it (the CLIP-similarity baseline as ``multimodal_baseline``), per
    group; empty when the sweep has no ablation runs."""
    lemon = df[df["method"].str.match(r"^lemon_opt(:|$)") | (df["method"] == "clip_sim")]
    if not lemon["method"].str.contains(":", regex=False).any():
        return pd.DataFrame()
    table = main_table(lemon, metrics, objective, include_ablations=True)
    ablation = table["method"].str.partition(":")[2].replace("", "none")
    ablation = ablation.where(table["method"] != "clip_sim", "multimodal_baseline")
    rank = ablation.map({a: i for i, a in enumerate(ABLATIONS)}).fillna(len(ABLATIONS))
    at = list(table.columns).index("method")
    table.insert(at + 1, "ablation", ablation)
    keys = list(table.columns[:at])
    ablated = (ablation != "none").groupby([table[k] for k in keys], dropna=False).transform("any")
    table = table.assign(_rank=rank)[ablated.to_numpy()]  # only groups that were ablated
    table = table.sort_values(keys + ["_rank"], kind="stable").drop(columns="_rank")
    return table.drop(columns="method").reset_index(drop=True)


# --------------------------------------------------------------------------------------------- output
def formatted(table: pd.DataFrame, decimals: int = 1) -> pd.DataFrame:
    """Display copy: ``<m> mean`` + ``<m> std`` -> one ``<m>`` column "95.1 ± 0.3"; other floats rounded."""
    out = pd.DataFrame(index=table.index)

    def fmt(v):
        return "-" if pd.isna(v) else f"{v:.{decimals}f}"

    for col in table.columns:
        if col.endswith(" std") and f"{col[:-4]} mean" in table:
            continue
        if col.endswith(" mean") and f"{col[:-5]} std" in table:
            std = table[f"{col[:-5]} std"]
            out[col[:-5]] = [
                fmt(m) + ("" if pd.isna(s) else f" ± {s:.{decimals}f}")
                for m, s in zip(table[col], std)
            ]
        elif pd.api.types.is_float_dtype(table[col]) and col != "noise_level":
            out[col] = table[col].map(fmt)
        else:
            out[col] = table[col].astype(str)
    return out


def format_table(table: pd.DataFrame, decimals: int = 1) -> str:
    """The table as aligned text (what the CLI prints)."""
    return "(empty)" if table.empty else formatted(table, decimals).to_string(index=False)


def _latex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text).replace("±", r"$\pm$")


def to_latex(table: pd.DataFrame, caption: str = "", decimals: int = 1) -> str:
    """A booktabs ``tabular`` of the formatted table (needs ``\\usepackage{booktabs}``)."""
    shown = formatted(table, decimals)
    lines = [
        "% " + " ".join(caption.split()),
        r"\begin{tabular}{" + "l" * len(shown.columns) + "}",
        r"\toprule",
        " & ".join(_latex_escape(str(c)) for c in shown.columns) + r" \\",
        r"\midrule",
    ]
    lines += [
        " & ".join(_latex_escape(v) for v in row) + r" \\" for row in shown.itertuples(index=False)
    ]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def build_tables(
    df: pd.DataFrame, metrics: Sequence[str] = METRICS, objective: str = OBJECTIVE
) -> dict[str, pd.DataFrame]:
    """All paper tables of a record frame, by name (empty ones left out)."""
    from lemon.downstream.table import downstream_table, is_downstream

    downstream = is_downstream(df)
    scored = df[~downstream]
    main = main_table(scored, metrics, objective) if not scored.empty else pd.DataFrame()
    tables = {
        "main": main,
        "hparam_drop": hparam_drop_table(main, metrics),
        "noise_curves": noise_curves(main),
        "ablations": ablation_table(scored, metrics, objective) if not scored.empty else main,
        "downstream": downstream_table(df),
    }
    return {name: t for name, t in tables.items() if not t.empty}


TITLES = {
    "main": "Test metrics (%) at the (k, distance) with the best mean val F1, mean ± std over seeds",
    "hparam_drop": "LEMoN_OPT vs LEMoN_FIX: hyper-parameter drop (OPT − FIX, % points)",
    "noise_curves": "Test metrics (%) by noise level",
    "ablations": "Ablations of LEMoN_OPT (%)",
    "downstream": "Downstream models trained on filtered data: test accuracy / retrieval recall (%), "
    "mean ± std over seeds",
}


def build_parser(prog: str = "python sweep.py tables") -> argparse.ArgumentParser:
    p = HelpfulParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--output_root", required=True, help="Sweep root (the sweep's --output_root).")
    p.add_argument(
        "--experiment", nargs="*", default=None, help="Only these experiments (folder names)."
    )
    p.add_argument(
        "--tables_dir",
        default=None,
        help="Where to write CSV + LaTeX (default OUTPUT_ROOT/tables).",
    )
    p.add_argument(
        "--metrics", nargs="+", default=list(METRICS), help="Columns (flat metrics.json keys)."
    )
    p.add_argument("--objective", default=OBJECTIVE, help="Val metric selecting k and distance.")
    return p


def launch_gaps(
    root: Path, names: Sequence[str], report: LoadReport, registry: Registry | None
) -> tuple[list[str], list[str]]:
    """Count the runs of experiments ``names`` that were never launched, from their grids in ``registry``
    (the EXPERIMENTS of experiments.py, which the caller passes in).

    Sets ``report.expected`` / ``report.not_launched`` (a job is not launched when its run folder does not
    exist); returns the names with aliases resolved to folder names, and notes (per-experiment counts,
    experiments without a grid, folders not in the grid).
    """
    from lemon.sweep import build_jobs

    if registry is None:
        return list(names), [
            "no experiment grids given; runs never launched are not counted (python sweep.py tables "
            "counts them from experiments.py)."
        ]
    resolved, notes = [], []
    for name in names:
        if name not in registry:
            resolved.append(name)
            notes.append(
                f"{name} is not an experiment of experiments.py; runs never launched are not "
                "counted."
            )
            continue
        experiment = registry.get(name)()
        resolved.append(experiment.name)
        try:
            jobs = build_jobs(experiment, root, registry)
        except LemonError as err:
            notes.append(
                f"{experiment.name}: cannot list its runs ({err}); runs never launched are not "
                "counted."
            )
            continue
        missing = sum(not job.run_dir.is_dir() for job in jobs)
        report.expected += len(jobs)
        report.not_launched += missing
        if missing and len(names) > 1:  # the summary line gives the total
            notes.append(
                f"{experiment.name}: {missing} of {len(jobs)} runs not launched; start them with "
                f"python sweep.py launch --experiment {experiment.name} --output_root {root}"
            )
        folder = root / experiment.name
        known = {job.hash for job in jobs}
        extra = [
            d
            for d in (folder.iterdir() if folder.is_dir() else ())
            if d.is_dir() and not d.name.startswith(".") and d.name not in known
        ]
        if extra:
            notes.append(
                f"{experiment.name}: {len(extra)} run folder(s) are not in its grid in "
                "experiments.py (an older grid?); they are included."
            )
    return resolved, notes


def _select_experiments(
    df: pd.DataFrame, report: LoadReport, names: Sequence[str], registry: Registry | None
) -> tuple[pd.DataFrame, LoadReport, list[str]]:
    """Rows and report of experiments ``names`` only, plus the launch-gap notes."""
    names, notes = launch_gaps(report.root, names, report, registry)
    unknown = sorted(set(names) - set(df["experiment"]))
    if unknown:
        found = ", ".join(sorted(set(df["experiment"]))) or "none"
        raise LemonError(
            f"No finished runs of experiment(s) {', '.join(unknown)} under "
            f"{report.root}; found: {found}."
        )
    df = df[df["experiment"].isin(names)]
    return df, report.only(set(names), len(df)), notes


@command()
def main(argv: Sequence[str] | None = None, experiments: Registry | None = None) -> int:
    """CLI: load, print the load report and every table, write CSV + LaTeX; returns the exit code.

    ``experiments``: the grids (experiments.py's EXPERIMENTS) the runs were launched from, to count the
    runs never launched; ``python sweep.py tables`` passes them."""
    from lemon.sweep.jobs import check_writable

    args = build_parser().parse_args(argv)
    df, report = load_records(args.output_root)
    notes: list[str] = []
    if args.experiment:
        df, report, notes = _select_experiments(df, report, args.experiment, experiments)
    print(report.details())
    for note in notes:
        print(f"note: {note}")
    if df.empty:
        print(f"No finished runs under {report.root}: no table to build.")
        return 1
    out_dir = Path(args.tables_dir).expanduser() if args.tables_dir else report.root / "tables"
    check_writable(out_dir, "--tables_dir")
    tables = build_tables(df, args.metrics, args.objective)
    of = (
        f"{report.expected} runs of the grid" if report.expected else f"{report.n_runs} run folders"
    )
    partial = "" if report.complete else f"  [built from {report.loaded} of {of}]"
    try:
        for name, table in tables.items():
            print(f"\n== {name}: {TITLES[name]}{partial}\n{format_table(table)}")
            for note in table.attrs.get("notes", []):
                print(f"note: {note}")
            atomic_write_csv(out_dir / f"{name}.csv", table.round(6))
            atomic_write_text(out_dir / f"{name}.tex", to_latex(table, TITLES[name] + partial))
    except OSError as err:
        print(
            f"error: cannot write the tables to {out_dir} ({err.strerror or err}); pass a writable "
            "--tables_dir.",
            file=sys.stderr,
        )
        return 2
    print(f"\ntables written to {out_dir} ({', '.join(tables)}; .csv and .tex)")
    if not report.complete:
        print(f"WARNING: {report.summary()}")
    return 0
