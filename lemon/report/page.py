"""HTML and figures of the suspected-error report (:mod:`lemon.report.build` assembles the data).

Kept apart so the data logic stays short: this module only turns rows and numbers into markup and PNGs.
Every string from the data is escaped; images are data URIs, so the page needs nothing beside itself.
"""

from __future__ import annotations

import base64
import html
import io as _bytes
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon.method.labelfree import wide_interval_line

SPLITS = ("train", "val", "test")
TERM_COLOURS = {"d_mm": "#4c72b0", "s_n": "#dd8452", "s_m": "#55a868"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#666;font-size:13px} .chips span{display:inline-block;background:#f0f2f5;border-radius:12px;
padding:3px 10px;margin:6px 6px 0 0;font-size:13px} .note{background:#fff8e1;border-left:4px solid #f0b400;
padding:6px 10px;margin:8px 0;font-size:13px} table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #e5e5e5;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#fafafa;position:sticky;top:0} table.suspects{width:100%;table-layout:fixed}
table.metrics td{text-align:right}
.thumb{width:112px;height:112px;object-fit:cover;border-radius:4px;border:1px solid #ccc}
.noimg{width:112px;height:112px;display:flex;align-items:center;justify-content:center;background:#f3f3f3;
color:#999;font-size:11px;border-radius:4px;text-align:center}
.obs{font-size:15px;font-weight:600;overflow-wrap:anywhere} .badge{display:inline-block;border-radius:3px;
padding:1px 6px;font-size:11px;margin-top:4px;color:#fff} .err{background:#c0392b} .ok{background:#7f8c8d}
.flag{background:#e67e22} .score{font-size:16px;font-weight:700} .terms{font-size:12px;color:#444}
.bar{display:flex;height:8px;width:160px;background:#eee;margin:4px 0;border-radius:2px;overflow:hidden}
.nb{display:flex;flex-wrap:wrap;gap:6px;margin:2px 0 8px} .nb div{width:84px;font-size:11px;line-height:1.2}
.nb img,.nb .mini{width:56px;height:56px;object-fit:cover;border-radius:3px;display:block;background:#f3f3f3}
.nb .chip{width:auto;background:#f6f6f6;border-radius:10px;padding:2px 8px;font-size:12px}
.differs{color:#c0392b} .agrees{color:#2e7d32} .why{font-size:12px;color:#555;margin-top:2px}
.plot{max-width:100%;border:1px solid #eee;margin:6px 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return (
        "-"
        if not np.isfinite(v)
        else f"{v:.{digits}g}"
        if abs(v) >= 1e3 or 0 < abs(v) < 1e-3
        else f"{v:.{digits}f}"
    )


def _labels(scores: pd.DataFrame) -> np.ndarray | None:
    y = (
        pd.to_numeric(scores.get("is_mislabel"), errors="coerce")
        if "is_mislabel" in scores
        else None
    )
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
        axes = fig.subplots(1, 3 if two_classes else 1)
        hist = axes[2] if two_classes else axes
        if two_classes:
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
            bins = np.histogram_bin_edges(s, bins=40)
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


def _shown_text(row: pd.Series, names: dict) -> str:
    """What the pair says: the class name (classification) or the caption."""
    label = row.get("observed_label")
    return names[label] if label in names else str(row.get("text", label))


def _neighbour_block(
    title: str, rows: Sequence[pd.Series], observed: str, names: dict, thumbs: Callable | None
) -> str:
    """Neighbours of one side: thumbnails with their texts, or compact text chips without images.

    With class labels (``names``), neighbours whose label differs from the observed one are marked and the
    most common label is named; free-text captions all differ as strings, so they are shown unmarked.
    """
    if not rows:
        return ""
    texts = [_shown_text(r, names) for r in rows]
    items = []
    for r, text in zip(rows, texts):
        cls = "plain" if not names else "differs" if text != observed else "agrees"
        uri = thumbs(r, 56) if thumbs else None
        img = (
            f'<img src="{uri}" alt="">' if uri else ('<span class="mini"></span>' if thumbs else "")
        )
        box = "nbi" if thumbs else "chip"
        items.append(f'<div class="{box}">{img}<span class="{cls}">{_e(text)}</span></div>')
    summary = ""
    if names:
        common, count = Counter(texts).most_common(1)[0]
        summary = f": {sum(t != observed for t in texts)} of {len(rows)} carry another label"
        if common != observed and count > 1:
            summary += f"; most say <b>{_e(common)}</b> ({count} of {len(rows)})"
    return f'<div class="why">{_e(title)}{summary}</div><div class="nb">{"".join(items)}</div>'


def suspect_row(
    rank: int,
    row: pd.Series,
    nbrs: dict[str, list],
    hparams: dict,
    names: dict,
    thumbs: Callable | None,
    threshold: float | None,
) -> str:
    """One ``<tr class="suspect">``: image (when ``thumbs``), observed text, ground truth, score terms and
    the neighbours (the text look-alikes only with images: their texts match by construction)."""
    image = ""
    if thumbs:
        uri = thumbs(row, 112)
        image = (
            "<td>"
            + (
                f'<img class="thumb" src="{uri}" alt="">'
                if uri
                else '<div class="noimg">image not found</div>'
            )
            + "</td>"
        )
    observed = _shown_text(row, names)
    truth = ""
    mislabel = pd.to_numeric(pd.Series([row.get("is_mislabel")]), errors="coerce").iloc[0]
    if not pd.isna(mislabel):
        clean = row.get("clean_label")
        clean = names.get(clean, clean)
        truth = (
            f'<span class="badge err">known error &middot; clean: {_e(clean)}</span>'
            if mislabel
            else '<span class="badge ok">clean in the ground truth</span>'
        )
    return (
        f'<tr class="suspect"><td>#{rank}<br><span class="sub">{_e(row["split"])} '
        f"{_e(row.get('idx', ''))}</span></td>{image}"
        f'<td><div class="obs">{_e(observed)}</div>{truth}</td>{_score_cell(row, hparams, threshold)}'
        f"<td>{_why(row, nbrs, observed, names, thumbs)}</td></tr>"
    )


def _score_cell(row: pd.Series, hparams: dict, threshold: float | None) -> str:
    """The score, the flag, and the score's terms as a stacked bar and as numbers."""
    if "flagged" in row.index and not pd.isna(row["flagged"]):
        flagged = str(row["flagged"]).lower() in ("true", "1")
    else:
        flagged = threshold is not None and row["score"] >= threshold
    weights = {
        "d_mm": 0.0 if hparams.get("ablation") == "d1" else 1.0,
        "s_n": float(hparams.get("beta", 1.0)),
        "s_m": float(hparams.get("gamma", 1.0)),
    }
    parts = {
        t: weights[t] * float(row[t]) for t in TERM_COLOURS if t in row and not pd.isna(row[t])
    }
    total = sum(max(v, 0.0) for v in parts.values()) or 1.0
    bar = "".join(
        f'<span style="width:{100 * max(v, 0) / total:.1f}%;background:{TERM_COLOURS[t]}" '
        f'title="{t}"></span>'
        for t, v in parts.items()
    )
    prefix = {"d_mm": "", "s_n": "β·", "s_m": "γ·"}
    terms = " + ".join(
        f'<span style="color:{TERM_COLOURS[t]}">{prefix[t]}{t} {_num(v)}</span>'
        for t, v in parts.items()
    )
    skip = (*TERM_COLOURS, "score", "idx", "is_mislabel", "clean_label", "observed_label")
    extra = [c for c in row.index if c not in skip and isinstance(row[c], (float, np.floating))]
    terms += "".join(f"<br>{_e(c)} {_num(row[c])}" for c in extra)  # other scorers' components
    return (
        f'<td><div class="score">{_num(row["score"])}</div>'
        + ('<span class="badge flag">flagged</span>' if flagged else "")
        + f'<div class="bar">{bar}</div><div class="terms">{terms}</div></td>'
    )


def _why(
    row: pd.Series, nbrs: dict[str, list], observed: str, names: dict, thumbs: Callable | None
) -> str:
    """The neighbours that drove the score: image look-alikes and (with images) text look-alikes."""
    image_side = _neighbour_block(
        "Images most like this one are " + ("labelled" if names else "captioned"),
        nbrs.get("n", []),
        observed,
        names,
        thumbs,
    )
    text_side = (
        _neighbour_block(
            "Pairs whose text reads like this one show", nbrs.get("m", []), observed, names, thumbs
        )
        if thumbs
        else ""
    )
    return image_side + text_side or '<div class="why">neighbours not recorded for this run</div>'


def _metrics_table(metrics: dict) -> str:
    splits = [s for s in SPLITS if f"{s}/n" in metrics]
    cols = [
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
    ]
    cols = [(k, label) for k, label in cols if any(f"{s}/{k}" in metrics for s in splits)]
    if not splits:
        return '<p class="sub">No metrics.json in this run.</p>'
    head = "".join(f"<th>{_e(label)}</th>" for _, label in cols)
    body = "".join(
        f"<tr><th>{s}</th>"
        + "".join(
            f"<td>{_e(metrics.get(f'{s}/{k}', '-')) if k.startswith('n') else _num(metrics.get(f'{s}/{k}'))}</td>"
            for k, _ in cols
        )
        + "</tr>"
        for s in splits
    )
    return f'<table class="metrics"><tr><th>split</th>{head}</tr>{body}</table>'


def page(
    *,
    title: str,
    run_dir: Path,
    args: dict,
    hparams: dict,
    metrics: dict,
    scores: pd.DataFrame,
    rows: list[str],
    plots: list[tuple[str, str]],
    n_flagged: int,
    threshold: tuple[str, float | None],
    neighbours_known: bool,
    thumbs: tuple[int, int],
    has_image_column: bool,
) -> str:
    """The whole HTML document."""
    resolved = args.get("resolved") or {}
    from lemon.data import default_noise_type

    noise_type = args.get("noise_type") or default_noise_type(
        str(args.get("dataset")), bool(args.get("real_dataset"))
    )
    level = resolved.get("noise_level", args.get("noise_level"))
    chips = {
        "pairs scored": len(scores),
        "noise": f"{noise_type} @ {level}",
        "scorer": hparams.get("scorer"),
        "selection": hparams.get("selection"),
        "k": hparams.get("knn_k"),
        "distance": hparams.get("dist_type"),
        "ablation": hparams.get("ablation"),
    }
    chips.update(
        {
            n: _num(hparams[n])
            for n in ("beta", "gamma", "tau_1_n", "tau_2_n", "tau_1_m", "tau_2_m")
            if n in hparams
        }
    )
    chip_html = "".join(
        f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in chips.items() if v is not None
    )
    name, thr = threshold
    rule = hparams.get("flag_rule_text") or f"the {name} threshold"
    flag_line = (
        f"<b>{n_flagged}</b> of {len(scores)} pairs are flagged by {_e(rule)} (score at or above "
        f"{_num(thr)}); all of them are listed in <code>flagged.csv</code> next to this page."
        if thr is not None
        else "No threshold in hparams.json: nothing flagged."
    )
    label_free = hparams.get("label_free") or {}
    if label_free.get("rate") is not None:
        pool = "held-out" if label_free.get("pool") == "held_out" else "scored"
        low, high = label_free.get("low"), label_free.get("high")
        interval = (
            f" (interval {100 * low:.1f}%&ndash;{100 * high:.1f}%)"
            if low is not None and high is not None
            else ""
        )
        flag_line += (
            f" Estimated noise rate, without labels: <b>{100 * label_free['rate']:.1f}%</b>"
            f"{interval} of the {pool} pairs ({_e(label_free.get('method', ''))}; "
            f"{label_free.get('n_mismatched', 0)} deliberately mismatched pairs scored)."
        )
    notes = [f"Label-free rule: {w}" for w in label_free.get("warnings", [])]
    wide = wide_interval_line(label_free) if label_free.get("rate") is not None else None
    if wide and not any("uncertain" in w for w in label_free.get("warnings", [])):
        notes.insert(0, f"Label-free rule: {wide}")
    if not has_image_column:
        notes.append("This run has no image references (embedding-only data): no thumbnails.")
    elif thumbs[1]:
        notes.append(
            f"{thumbs[1]} of {sum(thumbs)} images shown could not be found under the run's data "
            f"root (--data_dir {args.get('data_dir') or '/ $LEMON_DATA_DIR'})."
        )
    if not neighbours_known:
        notes.append(
            "Neighbours are not available (no readable neighbours.npz, or the train split was not "
            "scored)."
        )
    note_html = "".join(f'<div class="note">{_e(n)}</div>' for n in notes)
    plot_html = "".join(
        f'<h3 class="sub">{_e(cap)}</h3><img class="plot" src="{uri}" alt="{_e(cap)}">'
        for cap, uri in plots
    )
    image_th = "<th>image</th>" if has_image_column else ""
    widths = ["70px"] + (["136px"] if has_image_column else []) + ["260px", "200px", "auto"]
    colgroup = "<colgroup>" + "".join(f'<col style="width:{w}">' for w in widths) + "</colgroup>"
    legend = (
        'Score = <span style="color:#4c72b0">d_mm</span> (how badly the image and its text match) + '
        'β·<span style="color:#dd8452">s_n</span> (the image\'s look-alikes carry different texts) + '
        'γ·<span style="color:#55a868">s_m</span> (pairs with a similar text show different images). '
        if "s_n" in scores
        else "Score: "
    ) + "higher = more likely mislabelled."
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
        f'<div class="sub">{_e(run_dir.resolve())}</div><div class="chips">{chip_html}</div>'
        f"<p>{flag_line}</p>{note_html}<h2>Metrics</h2>{_metrics_table(metrics)}"
        f'<h2>Top {len(rows)} most suspicious pairs</h2><p class="sub">{legend}</p>'
        f'<table class="suspects">{colgroup}<tr><th>rank</th>{image_th}<th>observed text</th>'
        f"<th>score</th><th>why: nearest neighbours</th></tr>{''.join(rows)}</table>"
        f"<h2>Score distributions</h2>{plot_html}"
        "</body></html>"
    )
