"""The downstream table (``lemon.tables.aggregate`` prints it): per dataset, noise and filter, the downstream
model's test accuracy (classification) or retrieval recall (captioning), mean ± std over seeds, in %."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lemon.downstream.config import SCRIPT

#: what the table reports per task (metrics.json keys of a downstream run)
DOWNSTREAM_METRICS = {
    "classification": ("test/accuracy",),
    "captioning": (
        "test/i2t_R@1",
        "test/i2t_R@5",
        "test/i2t_R@10",
        "test/t2i_R@1",
        "test/t2i_R@5",
        "test/t2i_R@10",
    ),
}
KEYS = ("task", "dataset", "noise_type", "noise_level")


def is_downstream(df: pd.DataFrame) -> pd.Series:
    """Rows of ``df`` (lemon.tables.results records) that are downstream runs."""
    if "script" not in df:
        return pd.Series(False, index=df.index)
    return df["script"].astype(str) == SCRIPT


def filter_method(df: pd.DataFrame) -> pd.Series:
    """What filtered the data: the scoring method, or 'no filter' / 'random' (which ignore the scores)."""
    rule = df["filter"].astype(str)
    return df["method"].where(~rule.isin(["none", "random"]), rule.replace({"none": "no filter"}))


def downstream_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, dataset, noise, method, filter): runs, kept and kept-noise %, then
    ``<metric> mean`` / ``<metric> std`` (%, sample std over seeds); empty without downstream runs."""
    runs = df[is_downstream(df)]
    if runs.empty:
        return pd.DataFrame()
    runs = runs.assign(method=filter_method(runs), filter=runs["filter_label"])
    keys = [k for k in KEYS if k in runs] + ["method", "filter"]
    metrics = [m for task in DOWNSTREAM_METRICS.values() for m in task if m in runs]
    values = runs[keys].assign(
        kept=100 * runs["train/n_kept"] / runs["train/n"],
        kept_noise=100
        * (
            pd.to_numeric(runs["train/kept_noise_rate"], errors="coerce")
            if "train/kept_noise_rate" in runs
            else np.nan
        ),
        **{m: 100 * pd.to_numeric(runs[m], errors="coerce") for m in metrics},
    )
    grouped = values.groupby(keys, dropna=False, sort=True)
    out = grouped.size().to_frame("runs")
    out["kept %"] = grouped["kept"].mean()
    out["kept noise %"] = grouped["kept_noise"].mean()
    for metric in metrics:
        short = metric.split("/", 1)[1]
        out[f"{short} mean"] = grouped[metric].mean()
        out[f"{short} std"] = grouped[metric].std(ddof=1)
    out = out.reset_index()
    first = metrics[0].split("/", 1)[1] + " mean"
    order = np.lexsort(
        (
            -out[first].fillna(-1).to_numpy(),
            *(out[k].astype(str).to_numpy() for k in keys[:-2][::-1]),
        )
    )
    return out.iloc[order].dropna(axis=1, how="all").reset_index(drop=True)
