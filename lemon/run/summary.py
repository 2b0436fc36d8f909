"""The one-screen summary run_lemon prints: per split AUROC, AUPRC and F1 at each threshold, the selected
hyper-parameters, the estimated noise rate, the flags and where the files are."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lemon.method.hparams import HPARAM_NAMES
from lemon.method.labelfree import is_uncertain_note, rate_text, wide_interval_line
from lemon.run.outputs import RULE_TEXT
from lemon.scale import stream

if TYPE_CHECKING:
    from lemon.run.pipeline import RunResult

SUMMARY_KEYS = ("AUROC", "AUPRC", "F1_optimal", "F1_prevalence", "F1_heuristic", "F1_label_free")


def format_summary(result: RunResult) -> str:
    """One screen: per split AUROC, AUPRC and F1 at each threshold, the flags, and where the files are."""
    m = result.metrics
    splits = [s for s in ("train", "val", "test") if f"{s}/n" in m]

    def fmt(v):
        return "   -  " if v is None else f"{v:6.3f}"

    h = result.hparams
    if any(m.get(f"{s}/AUROC") is not None for s in splits):
        lines = [f"{'split':<6} {'n':>7}  " + " ".join(f"{k:>13}" for k in SUMMARY_KEYS)]
        for s in splits:
            lines.append(
                f"{s:<6} {m[f'{s}/n']:>7}  "
                + " ".join(f"{fmt(m.get(f'{s}/{k}')):>13}" for k in SUMMARY_KEYS)
            )
        lines.append(
            "F1_<rule>: F1 when flagging score >= the <rule> threshold: optimal = best val F1, "
            "prevalence = flags the val mislabel rate, heuristic = the original's KDE valley on val, "
            "label_free = flags the estimated noise rate (no labels used)."
        )
    else:  # no ground truth: what the run has is counts, the estimated rate and the flags
        rule = h.get("flag_rule") or "label_free"
        lines = [f"{'split':<6} {'n':>7} {'flagged':>8}"]
        for s in splits:
            flagged = m.get(f"{s}/n_flagged_{rule}")
            lines.append(f"{s:<6} {m[f'{s}/n']:>7} {'-' if flagged is None else flagged:>8}")
        lines.append("(no ground truth, so no AUROC or F1: the flags come from the scores alone)")
    chosen = ", ".join(f"{n}={h[n]:.4g}" for n in HPARAM_NAMES if n in h)
    sel = h.get("selected_val")
    on_reviewed = h.get("selected_reviewed")
    lines.append(
        f"scorer={h['scorer']} k={h['knn_k']} dist={h['dist_type']} ablation={h['ablation']} "
        f"selection={h.get('selection', '-')}"
        + (f" (val F1 {sel:.4f})" if sel is not None else "")
        + (f" (estimated F1 on the reviewed pairs {on_reviewed:.4f})" if on_reviewed else "")
    )
    if chosen:
        lines.append(chosen)
    lf = h.get("label_free")
    audit = h.get("audit_noise_rate")
    if audit:
        lines.append(
            f"noise rate from the audit (--reviewed): {audit['rate']:.1%} "
            f"({audit['wrong']} of {audit['audited']} audited pairs wrong; 95% Clopper-Pearson "
            f"interval {audit['low']:.1%} - {audit['high']:.1%}); it replaces the label-free "
            f"estimate" + (f" ({lf['rate']:.1%})" if lf else "")
        )
    elif lf:
        sep = lf.get("separation_auroc")
        lines.append(
            f"estimated noise rate (no labels used): {rate_text(lf)} of the "
            + ("held-out" if lf.get("pool") == "held_out" else "scored")
            + f" pairs ({lf['method']}, {lf['n_mismatched']} mismatched pairs"
            + (f", separation {sep:.2f}" if sep is not None else "")
            + ")"
            + _true_rate(m, splits, lf.get("pool"))
            + (
                "; see the warnings in log.txt"
                if set(lf.get("warnings", [])) - set(lf.get("expected_warnings", []))
                else ""
            )
        )
        wide = wide_interval_line(lf)
        if wide:  # the rule's own note says why the interval is wide; the log keeps it at INFO
            why = [f"label-free rule: {w}" for w in lf.get("warnings", []) if is_uncertain_note(w)]
            lines.append(why[0] if why else wide)
    search = stream.knn_summary(h, m)
    if search:
        lines.append(search)
    rule = h.get("flag_rule")
    if rule:
        flagged = {s: m.get(f"{s}/n_flagged_{rule}") for s in splits}
        counts = ", ".join(f"{s} {n} of {m[f'{s}/n']}" for s, n in flagged.items() if n is not None)
        lines.append(f"flagged ({RULE_TEXT.get(rule, rule)}): {counts}")
    dropped = {key: n for key, n in m.items() if key.endswith("/dropped") and n}
    if dropped:
        lines.append(
            "not scored: "
            + ", ".join(f"{key.split('/')[0]} {n}" for key, n in dropped.items())
            + " (each with its reason in dropped.csv)"
        )
    out = result.out_dir
    report = out / "report.html"
    lines.append(
        f"outputs: {out}  (scores.csv: one row per pair; metrics.json; hparams.json"
        + (f"; report: {report}" if report.is_file() else "; add --report for report.html")
        + ")"
    )
    return "\n".join(lines)


def _true_rate(m: dict, splits: list[str], pool: str | None) -> str:
    """'; true rate 40.0%': the share of mislabelled pairs among those the estimate covers, where the run
    knows it (injected noise, a clean column); '' otherwise."""
    covered = [s for s in splits if pool != "held_out" or s != "train"]
    known = [s for s in covered if m.get(f"{s}/prevalence") is not None and m.get(f"{s}/n")]
    if not known or len(known) != len(covered):
        return ""
    n = sum(m[f"{s}/n"] for s in known)
    true = sum(m[f"{s}/prevalence"] * m[f"{s}/n"] for s in known) / n
    return f"; true rate {true:.1%}"
