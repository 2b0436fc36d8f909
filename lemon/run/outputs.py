"""What a run writes into its (staging) folder: args.json with provenance, scores.csv (and .parquet) block
by block, dropped.csv, neighbours.npz, hparams.json and metrics.json, each written atomically."""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lemon.core import io
from lemon.core.npy import blocks
from lemon.data.features import Features
from lemon.method.suggest import SUGGESTION_KEYS, suggestion_columns
from lemon.scale import stream

if TYPE_CHECKING:
    from lemon.run.config import RunConfig
    from lemon.run.stages import Flags, Outputs, Scored
    from lemon.scorers.base import ScoringContext

#: what each flag rule means, as the summary, hparams.json and the report say it
RULE_TEXT = {
    "optimal": "the threshold that maximised F1 on the labelled val split",
    "label_free": "the label-free rule: the estimated share of mislabelled pairs, most suspicious first",
    "heuristic": "the original's label-free KDE-valley threshold",
    "reviewed": "the threshold that maximised F1 on the reviewed pairs (--reviewed; each audited pair "
    "stands for its share of the unreviewed ones)",
}


def environment() -> dict[str, Any]:
    """Versions and host facts for args.json (provenance)."""
    import sklearn
    import torch

    try:
        sha = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
                check=False,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "cuda": torch.version.cuda,
        "host": platform.node(),
        "git_sha": sha,
        "argv": sys.argv,
    }


def write_args(cfg: RunConfig, k: int, device: str, out: Path) -> dict[str, Any]:
    """args.json: every flag, what the run resolved (k, noise level, prompt, device) and the environment;
    returned so the load stage can add what it read."""
    resolved = {
        "knn_k": k,
        "noise_level": cfg.resolved_noise_level,
        "prompt": cfg.data_options().prompt,
        "device": device,
    }
    args = {**cfg.to_dict(), "resolved": resolved, "environment": environment()}
    io.atomic_write_json(out / "args.json", args)
    return args


def add_data_provenance(args: dict[str, Any], features: Features, out: Path) -> None:
    """args.json again, with where the data came from, the embedder, the cache and the dropped rows."""
    prov = features.provenance
    args["data"] = {
        "source": prov.source,
        "embedder": prov.embedder,
        "embedder_id": prov.embedder_id,
        "cache_root": prov.cache_root,
        "cache_hits": prov.cache_hits,
        "cache_misses": prov.cache_misses,
        "dropped": prov.dropped_counts(),
        "seen_by_model": prov.seen_by_model,
    }
    io.atomic_write_json(out / "args.json", args)


def score_rows(
    features: Features,
    split: str,
    out: dict[str, np.ndarray],
    threshold: float,
    start: int,
    stop: int,
) -> pd.DataFrame:
    """Rows ``[start, stop)`` of scored ``split`` as scores.csv has them: split, idx, row, image, labels,
    is_mislabel, score and its 1-D components, ``flagged`` (score >= ``threshold``) and the suggested fix
    (``suggested_label`` + ``suggestion_confidence``, or ``suggested_text`` + ``suggestion_similarity``)."""
    f, rows = features.splits[split], slice(start, stop)
    n = stop - start
    cols: dict[str, Any] = {"split": split, "idx": f.ids[rows]}
    cols["row"] = (f.source_rows if f.source_rows is not None else f.ids)[rows]
    if f.image_refs is not None:
        cols["image"] = list(f.image_refs[rows])
    cols["clean_label"] = f.clean[rows] if f.clean is not None else np.full(n, None)
    cols["observed_label"] = f.observed[rows]
    cols["text"] = f.texts[rows]
    cols["is_mislabel"] = (
        f.is_mislabel[rows].astype(int) if f.is_mislabel is not None else np.full(n, None)
    )
    cols["score"] = out["score"][rows]
    cols.update(
        {
            k: v[rows]
            for k, v in out.items()
            if k != "score" and k not in SUGGESTION_KEYS and np.ndim(v) == 1
        }
    )
    cols["flagged"] = out["score"][rows] >= threshold
    cols.update(suggestion_columns(features, out, rows))
    return pd.DataFrame(cols)


def score_blocks(
    features: Features, outputs: Outputs, threshold: float, block_rows: int
) -> Iterator[pd.DataFrame]:
    """scores.csv's rows, split by split, ``block_rows`` at a time: written as they come, so a run of
    millions of pairs never holds them all as one frame."""
    for split, out in outputs.items():
        for start, stop in blocks(len(features.splits[split]), block_rows):
            yield score_rows(features, split, out, threshold, start, stop)


def score_columns(features: Features, outputs: Outputs, threshold: float) -> pd.DataFrame:
    """The first row of each scored split: every column of scores.csv, in order, with its type."""
    heads = [
        score_rows(features, s, o, threshold, 0, min(1, len(features.splits[s])))
        for s, o in outputs.items()
    ]
    return pd.concat(heads, ignore_index=True)


def all_scores(features: Features, outputs: Outputs, threshold: float) -> pd.DataFrame:
    """scores.csv as one frame (what :attr:`lemon.run.pipeline.RunResult.scores` builds on first use)."""
    n_rows = sum(len(features.splits[s]) for s in outputs)
    frames = list(score_blocks(features, outputs, threshold, max(1, n_rows)))
    if not frames:
        return score_columns(features, outputs, threshold).iloc[:0]
    return pd.concat(frames, ignore_index=True)


def dropped_metrics(features: Features) -> dict[str, int]:
    """``{split}/dropped`` and ``{split}/dropped_<reason>``: every pair of the source not scored."""
    out: dict[str, int] = {}
    for split, dropped in features.provenance.dropped.items():
        key = split.replace(" ", "_")
        out[f"{key}/dropped"] = len(dropped)
        out.update({f"{key}/dropped_{r.replace(' ', '_')}": n for r, n in dropped.counts().items()})
    return out


def hparams_record(
    cfg: RunConfig, k: int, ctx: ScoringContext, scored: Scored, flags: Flags
) -> dict[str, Any]:
    """hparams.json: the scorer and its selected hyper-parameters, the thresholds, the flag rule and the
    label-free rule's details, and how neighbours were searched."""
    return {
        "scorer": cfg.scorer,
        "knn_k": k,
        "dist_type": cfg.dist_type,
        "ablation": cfg.ablation,
        **scored.hparams,
        "thresholds": flags.thresholds,
        "flag_rule": flags.flag_rule,
        "flag_rule_text": RULE_TEXT[flags.flag_rule],
        "label_free": flags.rule.info(),
        **reviewed_record(cfg, ctx),
        **stream.knn_info(ctx),
    }


def reviewed_record(cfg: RunConfig, ctx: ScoringContext) -> dict[str, Any]:
    """hparams.json's word on reviewed decisions (--reviewed): their counts, and where the noise rate
    comes from (``noise_rate_source``: 'audit', with its interval, or 'label_free')."""
    if ctx.reviewed is None:
        return {"noise_rate_source": "label_free"}
    audit = ctx.reviewed.noise_rate()
    record: dict[str, Any] = {
        "reviewed": {"decisions": cfg.reviewed, **ctx.reviewed.info()},
        "noise_rate_source": "audit" if audit else "label_free",
    }
    if audit:
        record["audit_noise_rate"] = {
            "rate": audit["estimated_noise_rate"],
            "low": audit["estimated_noise_rate_low"],
            "high": audit["estimated_noise_rate_high"],
            "interval": "Clopper-Pearson (exact binomial), 95%",
            "audited": audit["audit/n"],
            "wrong": audit["audit/wrong"],
        }
    return record


def write_results(
    out: Path,
    features: Features,
    scored: Scored,
    threshold: float,
    hparams: dict[str, Any],
    metrics: dict[str, Any],
    block_rows: int,
) -> None:
    """scores.csv (and .parquet) block by block, dropped.csv, neighbours.npz, hparams.json, metrics.json."""
    outputs = scored.outputs
    stream.write_scores(
        out,
        score_blocks(features, outputs, threshold, block_rows),
        score_columns(features, outputs, threshold),
        scored.parquet,
    )
    io.atomic_write_csv(out / "dropped.csv", features.provenance.dropped_frame())
    arrays = {
        f"{s}_{k}": features.reference_rows(v) if k.startswith("idx") else v
        for s, o in outputs.items()
        for k, v in o.items()
        if np.ndim(v) == 2
    }
    if arrays:  # neighbour ids index the reference set: keep its row -> train index map beside them
        io.atomic_save_npz(
            out / "neighbours.npz", {**arrays, "reference_index": features.reference_index}
        )
    io.atomic_write_json(out / "hparams.json", hparams)
    io.atomic_write_json(out / "metrics.json", metrics)
