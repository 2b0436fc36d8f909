"""The one pipeline: data -> noise -> embed (cached) -> neighbours -> score -> select -> evaluate -> write.

Every method (LEMoN and each baseline) goes through :func:`run`; only the scorer differs.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon import io
from lemon.config import HPARAM_NAMES, RunConfig
from lemon.data import DATASETS
from lemon.errors import LemonError, RunExistsError
from lemon.evaluate import evaluate_split, select_thresholds
from lemon.features import Features
from lemon.scorers import SCORERS
from lemon.scorers.base import ScoringContext

log = logging.getLogger("lemon")
SUMMARY_KEYS = ("AUROC", "AUPRC", "F1_optimal", "F1_prevalence", "F1_heuristic")


@dataclass
class RunResult:
    """What a finished run produced (also on disk in ``out_dir``)."""

    out_dir: Path
    hparams: dict[str, Any]
    metrics: dict[str, Any]
    scores: pd.DataFrame


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LemonError(
            f"--device {device} but CUDA is not available here; use --device cpu or auto."
        )
    return device


def load_features(cfg: RunConfig) -> Features:
    """Dataset -> (noise) -> embeddings, then the seeded reference cap and val subset of SPEC §1."""
    from lemon.noise import NOISES

    dataset = DATASETS.get(cfg.dataset)()
    # aliases (e.g. 'pairflip') name the same noise as their canonical name; unknown names fail here
    noise_name = None if cfg.noise_type is None else NOISES.canonical(cfg.noise_type)
    if noise_name is not None and noise_name not in dataset.noise_types:
        supported = (
            ", ".join(dataset.noise_types) or "none (the data carries its own observed labels)"
        )
        raise LemonError(
            f"Noise type '{cfg.noise_type}' is not supported for dataset '{cfg.dataset}'; "
            f"supported: {supported}."
        )
    if dataset.precomputed:
        if not dataset.noise_types and cfg.noise_level is not None:
            raise LemonError(
                f"--noise_level is not used with --dataset {cfg.dataset}: the data carries its "
                "own observed labels; drop --noise_level."
            )
        features = dataset.load_features(cfg)
    else:
        from lemon.data.loading import load_splits
        from lemon.embed import embed_dataset
        from lemon.noise import apply_noise

        splits = load_splits(dataset, cfg)
        if not cfg.real_dataset:
            noise_type = noise_name or dataset.noise_types[0]
            splits = apply_noise(splits, noise_type, cfg.resolved_noise_level, cfg.data_seed)
        features = embed_dataset(splits, cfg)
    if cfg.real_dataset:
        for split in features.splits.values():
            split.clean = split.is_mislabel = None
    seed_rng = np.random.default_rng([cfg.data_seed, 1])  # one generator per concern
    features.cap_reference(cfg.compr_dataset_size_limit, seed_rng)
    if cfg.subset_val_set is not None and cfg.subset_val_set < len(features.splits["val"]):
        pick = np.sort(
            np.random.default_rng([cfg.data_seed, 2]).choice(
                len(features.splits["val"]), cfg.subset_val_set, replace=False
            )
        )
        features.splits["val"] = features.splits["val"].subset(pick)
    n_ref = len(features.reference_index)
    if cfg.k >= n_ref:
        raise LemonError(
            f"knn_k={cfg.k} but the reference set has {n_ref} samples (k must be < {n_ref})."
        )
    return features


def prepare_out_dir(cfg: RunConfig) -> Path:
    out = Path(cfg.output_dir)
    if io.is_done(out):
        if not cfg.overwrite:
            raise RunExistsError(
                f"{out} already holds a finished run (it has a 'done' marker); pass "
                "--overwrite to replace it or choose another --output_dir."
            )
        (out / io.DONE).unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _attach_log(out: Path, debug: bool) -> logging.Handler:
    handler = logging.FileHandler(out / "log.txt", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    return handler


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Route warnings raised during a run into the run's log (and the console) as one line each."""
    log.warning("%s: %s", category.__name__, message)


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


def scores_frame(features: Features, outputs: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """One row per scored sample: split, idx, labels, is_mislabel, score and its 1-D components."""
    frames = []
    for split, out in outputs.items():
        f = features.splits[split]
        cols: dict[str, Any] = {"split": split, "idx": f.ids}
        if f.image_refs is not None:
            cols["image"] = list(f.image_refs)
        cols["clean_label"] = f.clean if f.clean is not None else np.full(len(f), None)
        cols["observed_label"] = f.observed
        cols["text"] = f.texts
        cols["is_mislabel"] = (
            f.is_mislabel.astype(int) if f.is_mislabel is not None else np.full(len(f), None)
        )
        cols["score"] = out["score"]
        cols.update({k: v for k, v in out.items() if k != "score" and np.ndim(v) == 1})
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def run(cfg: RunConfig) -> RunResult:
    """Run one evaluation end to end and write SPEC §8's outputs atomically, ``done`` last."""
    start = time.time()
    cfg.validate()
    scorer = SCORERS.get(cfg.scorer)(cfg)  # unknown names fail before any work
    DATASETS.canonical(cfg.dataset)
    out = prepare_out_dir(cfg)
    handler = _attach_log(out, cfg.debug)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _log_warning
            return _run(cfg, scorer, out, start)
    finally:
        log.removeHandler(handler)
        handler.close()


def _run(cfg: RunConfig, scorer, out: Path, start: float) -> RunResult:
    log.info("run_lemon %s", " ".join(sys.argv[1:]))
    device = resolve_device(cfg.device)
    args = {
        **cfg.to_dict(),
        "resolved": {
            "knn_k": cfg.k,
            "noise_level": cfg.resolved_noise_level,
            "prompt": cfg.prompt,
            "device": device,
        },
        "environment": environment(),
    }
    io.atomic_write_json(out / "args.json", args)
    timings: dict[str, float] = {}
    t = time.time()
    features = load_features(cfg)
    timings["load_features_s"] = time.time() - t
    if (
        features.meta
    ):  # embedder, cache hits, unreadable images skipped per split: provenance of the inputs
        args["data"] = features.meta
        io.atomic_write_json(out / "args.json", args)
    scorer.check(features)
    ctx = ScoringContext(features, cfg, device=device)
    log.info(
        "task=%s reference=%d %s",
        features.task,
        len(features.reference_index),
        {s: len(f) for s, f in features.splits.items()},
    )

    t = time.time()
    hparams = scorer.fit(ctx)
    timings["fit_s"] = time.time() - t
    t = time.time()
    splits = [
        s
        for s in ("train", "val", "test")
        if s in features.splits and not (s == "train" and cfg.skip_train)
    ]
    outputs = {s: scorer.score(ctx, s, hparams) for s in splits}
    timings["score_s"] = time.time() - t

    val = features.splits["val"]
    thresholds = select_thresholds(outputs["val"]["score"], val.is_mislabel)
    metrics: dict[str, Any] = {}
    for s in splits:
        metrics.update(
            evaluate_split(outputs[s]["score"], features.splits[s].is_mislabel, thresholds, s)
        )
    timings["total_s"] = time.time() - start
    metrics.update({f"time/{k}": v for k, v in timings.items()})
    skipped = features.meta.get("skipped_images", {}) if features.meta else {}
    metrics.update({f"{s}/skipped_images": n for s, n in skipped.items()})

    frame = scores_frame(features, outputs)
    io.atomic_write_csv(out / "scores.csv", frame)
    arrays = {f"{s}_{k}": v for s, o in outputs.items() for k, v in o.items() if np.ndim(v) == 2}
    if arrays:  # neighbour ids index the reference set: keep its row -> train index map beside them
        io.atomic_save_npz(
            out / "neighbours.npz", {**arrays, "reference_index": features.reference_index}
        )
    hparams_out = {
        "scorer": cfg.scorer,
        "knn_k": cfg.k,
        "dist_type": cfg.dist_type,
        "ablation": cfg.ablation,
        **hparams,
        "thresholds": thresholds,
    }
    io.atomic_write_json(out / "hparams.json", hparams_out)
    io.atomic_write_json(out / "metrics.json", metrics)
    if cfg.report:
        from lemon.report import write_report

        write_report(out)
    log.info("done in %.1f s", time.time() - start)
    io.mark_done(out, time.time() - start)
    return RunResult(out, hparams_out, metrics, frame)


def format_summary(result: RunResult) -> str:
    """One-screen table: per split AUROC, AUPRC and F1 at the three thresholds, then the selection."""
    m = result.metrics
    splits = [s for s in ("train", "val", "test") if f"{s}/n" in m]

    def fmt(v):
        return "   -  " if v is None else f"{v:6.3f}"

    lines = [f"{'split':<6} {'n':>7}  " + " ".join(f"{k:>13}" for k in SUMMARY_KEYS)]
    for s in splits:
        lines.append(
            f"{s:<6} {m[f'{s}/n']:>7}  "
            + " ".join(f"{fmt(m.get(f'{s}/{k}')):>13}" for k in SUMMARY_KEYS)
        )
    h = result.hparams
    chosen = ", ".join(f"{n}={h[n]:.4g}" for n in HPARAM_NAMES if n in h)
    sel = h.get("selected_val")
    lines.append(
        f"scorer={h['scorer']} k={h['knn_k']} dist={h['dist_type']} ablation={h['ablation']} "
        f"selection={h.get('selection', '-')}" + (f" (val F1 {sel:.4f})" if sel is not None else "")
    )
    if chosen:
        lines.append(chosen)
    lines.append(f"outputs: {result.out_dir}")
    return "\n".join(lines)
