"""The report page: a Jinja2 template (``templates/report.html.j2``) filled with the run's summary, metrics
and figures, and the review script (``static/review.js``) inlined (:mod:`lemon.report.build` assembles the
data, :mod:`lemon.report.review` writes the review queue the script loads).

Jinja2 escapes every string from the data; the figures are PNG data URIs, so the summary needs nothing
beside the page, and the review cards are built by the script from ``report_files/``.
"""

from __future__ import annotations

import base64
import io as _bytes
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
METRIC_COLUMNS = (
    ("n", "n"),
    ("prevalence", "mislabel rate"),
    ("AUROC", "AUROC"),
    ("AUPRC", "AUPRC"),
    ("F1_optimal", "F1 (optimal)"),
    ("F1_prevalence", "F1 (prevalence)"),
    ("F1_heuristic", "F1 (heuristic)"),
    ("F1_label_free", "F1 (label-free)"),
    ("estimated_noise_rate", "estimated noise rate"),
    ("n_flagged_optimal", "flagged (optimal)"),
    ("n_flagged_heuristic", "flagged (heuristic)"),
    ("n_flagged_label_free", "flagged (label-free)"),
)


def num(value: Any, digits: int = 3) -> str:
    """A number as the page prints it: fixed decimals, or significant digits when very large or small."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    if not np.isfinite(v):
        return "-"
    return f"{v:.{digits}g}" if abs(v) >= 1e3 or 0 < abs(v) < 1e-3 else f"{v:.{digits}f}"


def _labels(scores: pd.DataFrame) -> np.ndarray | None:
    y = pd.to_numeric(scores["is_mislabel"], errors="coerce") if "is_mislabel" in scores else None
    return None if y is None or y.isna().any() else y.to_numpy().astype(bool)


def plots_png(scores: pd.DataFrame, hparams: dict) -> list[tuple[str, str]]:
    """Per scored split: (caption, PNG data URI) of ROC, PR and the score histogram (histogram only when
    the split has no labels or a single class)."""
    from matplotlib.figure import Figure
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    thresholds = {k: v for k, v in (hparams.get("thresholds") or {}).items() if v is not None}
    out = []
    for split in [s for s in SPLITS if (scores["split"] == s).any()]:
        part = scores[scores["split"] == split]
        s, y = part["score"].to_numpy(dtype=float), _labels(part)
        two_classes = y is not None and 0 < y.sum() < len(y)
        fig = Figure(figsize=(13.5 if two_classes else 5, 3.4), dpi=90, layout="constrained")
        axes = fig.subplots(1, 3 if two_classes else 1, squeeze=False)[0]
        hist = axes[2] if two_classes else axes[0]
        if y is not None and two_classes:
            fpr, tpr, _ = roc_curve(y, s)
            axes[0].plot(fpr, tpr, lw=2, label=f"AUROC {roc_auc_score(y, s):.3f}")
            axes[0].plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
            axes[0].set(
                xlabel="false positive rate", ylabel="true positive rate", title=f"{split}: ROC"
            )
            prec, rec, _ = precision_recall_curve(y, s)
            axes[1].plot(rec, prec, lw=2, label=f"AUPRC {average_precision_score(y, s):.3f}")
            axes[1].axhline(y.mean(), ls="--", c="grey", lw=1, label=f"prevalence {y.mean():.2f}")
            axes[1].set(xlabel="recall", ylabel="precision", title=f"{split}: precision-recall")
            for ax in axes[:2]:
                ax.legend(loc="lower right", fontsize=8)
            bins = np.histogram_bin_edges(s, bins=40).tolist()
            hist.hist(s[~y], bins=bins, alpha=0.6, label="clean", color="#4c72b0")
            hist.hist(s[y], bins=bins, alpha=0.6, label="mislabelled", color="#c0392b")
        else:
            hist.hist(s, bins=40, color="#4c72b0", alpha=0.8, label="all samples")
        colours = ("#333", "#e67e22", "#8e44ad", "#16a085")
        for (name, thr), colour in zip(sorted(thresholds.items()), colours):
            hist.axvline(thr, color=colour, ls=":", lw=1.5, label=f"{name} threshold")
        hist.set(
            xlabel="score (higher = more suspicious)",
            ylabel="samples",
            title=f"{split}: score histogram",
        )
        hist.legend(fontsize=7, framealpha=0.7)
        buf = _bytes.BytesIO()
        fig.savefig(buf, format="png")
        out.append(
            (
                f"{split} ({len(part)} pairs)",
                "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
            )
        )
    return out


def metrics_table(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """(column headers, one row of cells per scored split) of metrics.json; ([], []) without it."""
    splits = [s for s in SPLITS if f"{s}/n" in metrics]
    cols = [(k, label) for k, label in METRIC_COLUMNS if any(f"{s}/{k}" in metrics for s in splits)]
    rows = [
        [s]
        + [
            str(metrics.get(f"{s}/{k}", "-")) if k.startswith("n") else num(metrics.get(f"{s}/{k}"))
            for k, _ in cols
        ]
        for s in splits
    ]
    return [label for _, label in cols], rows


def summary(
    args: dict, hparams: dict, n_scores: int, n_flagged: int, threshold: tuple[str, float | None]
) -> dict[str, Any]:
    """The run at a glance: chips (data, scorer, hyper-parameters), the flag rule and the noise rate."""
    from lemon.data import default_noise_type

    resolved = args.get("resolved") or {}
    noise_type = args.get("noise_type") or default_noise_type(
        str(args.get("dataset")), bool(args.get("real_dataset"))
    )
    chips = {
        "pairs scored": n_scores,
        "noise": f"{noise_type} @ {resolved.get('noise_level', args.get('noise_level'))}",
        "scorer": hparams.get("scorer"),
        "selection": hparams.get("selection"),
        "k": hparams.get("knn_k"),
        "distance": hparams.get("dist_type"),
        "ablation": hparams.get("ablation"),
    }
    for name in ("beta", "gamma", "tau_1_n", "tau_2_n", "tau_1_m", "tau_2_m"):
        if name in hparams:
            chips[name] = num(hparams[name])
    name, thr = threshold
    label_free = hparams.get("label_free") or {}
    rate = label_free.get("rate")
    return {
        "chips": {k: v for k, v in chips.items() if v is not None},
        "rule": hparams.get("flag_rule_text") or f"the {name} threshold",
        "threshold": None if thr is None else num(thr),
        "n_flagged": n_flagged,
        "n_scores": n_scores,
        "rate": None if rate is None else f"{100 * rate:.1f}%",
        "low": None if label_free.get("low") is None else f"{100 * label_free['low']:.1f}%",
        "high": None if label_free.get("high") is None else f"{100 * label_free['high']:.1f}%",
        "rate_pool": "held-out" if label_free.get("pool") == "held_out" else "scored",
        "n_mismatched": label_free.get("n_mismatched", 0),
        "warnings": list(label_free.get("warnings", [])),
    }


@cache
def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("lemon.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def static_text(name: str) -> str:
    """A file of the package's ``static/`` folder (shipped as package data)."""
    return resources.files("lemon.report").joinpath("static", name).read_text(encoding="utf-8")


def render(**context: Any) -> str:
    """The whole HTML document from ``templates/report.html.j2`` (every value escaped but the script)."""
    return (
        _environment()
        .get_template("report.html.j2")
        .render(script=static_text("review.js"), style=static_text("report.css"), **context)
    )
