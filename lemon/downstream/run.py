"""``run_downstream``: filter a scored run's train split, train the downstream model, evaluate, write."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon.core import io
from lemon.core.errors import LemonError
from lemon.downstream.config import SCRIPT, DownstreamConfig
from lemon.downstream.filters import kept_rows, read_scored_run
from lemon.run import folder as rundir
from lemon.run.config import execution_fields

log = logging.getLogger(__name__)


def run_downstream(cfg: DownstreamConfig) -> dict[str, Any]:
    """Filter, train, evaluate and write the outputs; returns the metrics.

    Everything is checked before the output folder is touched; the folder is then claimed like a
    run_lemon run's (locked, written into a staging folder, swapped in with ``done`` last).
    """
    from lemon.core.device import resolve_device
    from lemon.downstream.models import classify, train_clip_and_retrieve
    from lemon.run.load import load_run_features
    from lemon.run.outputs import environment

    start = time.time()
    cfg.validate()
    out = Path(cfg.output_dir).expanduser()
    rundir.inspect_output_dir(out, cfg.overwrite)
    run = read_scored_run(cfg.scores)
    kept = kept_rows(run, cfg.filter, cfg.fraction, cfg.keep_n, cfg.train_seed)
    device = resolve_device(cfg.device)
    features, args = load_run_features(run.run_dir, device)
    train, test = features.splits["train"], features.splits["test"]
    rows = pd.Index(train.ids).get_indexer(kept)
    scored_text = run.train.set_index("idx").loc[kept, "text"].astype(str).to_numpy()
    if (rows < 0).any() or not np.array_equal(scored_text, train.texts[rows].astype(str)):
        raise LemonError(
            f"The data of {run.run_dir} changed since it was scored (train pairs or texts differ); "
            "score it again."
        )
    if test.clean is None:
        raise LemonError(
            f"{run.run_dir} has no clean test labels (a --real_dataset run?): the downstream model "
            "is evaluated on them."
        )
    with rundir.claim(out, overwrite=cfg.overwrite) as stage:
        metrics: dict[str, Any] = {
            "train/n": len(train),
            "train/n_kept": len(rows),
            "test/n": len(test),
        }
        if train.is_mislabel is not None:
            dropped = np.setdiff1d(np.arange(len(train)), rows)
            metrics["train/noise_rate"] = float(np.mean(train.is_mislabel))
            metrics["train/kept_noise_rate"] = float(np.mean(train.is_mislabel[rows]))
            metrics["train/dropped_precision"] = (
                float(np.mean(train.is_mislabel[dropped])) if len(dropped) else None
            )
        if features.task == "classification":
            metrics.update(
                classify(
                    train.img[rows],
                    train.observed[rows],
                    test.img,
                    test.clean,
                    cfg.classifier_c,
                    cfg.train_seed,
                )
            )
        else:
            if train.images is None or test.images is None:
                raise LemonError(
                    f"{run.run_dir} scored embeddings only: a CLIP trained from scratch needs the images."
                )
            metrics.update(
                train_clip_and_retrieve(
                    train.images.subset(rows),
                    [str(t) for t in train.texts[rows]],
                    test.images,
                    test.clean,
                    cfg,
                    stage.path / "clip",
                )
            )
        metrics["time/total_s"] = time.time() - start
        scored = {k: v for k, v in args.items() if k not in execution_fields() and k != "resolved"}
        io.atomic_write_json(
            stage.path / "args.json",
            {
                **scored,
                **cfg.to_dict(),
                "script": SCRIPT,
                "task": features.task,
                "filter_label": cfg.filter_label,
                "scored_run": str(run.run_dir),
                "resolved": args.get("resolved", {}),
                "environment": environment(),
            },
        )
        io.atomic_write_csv(stage.path / "kept.csv", pd.DataFrame({"idx": kept}))
        io.atomic_write_json(stage.path / "metrics.json", metrics)
        io.mark_done(stage.path, time.time() - start)
        stage.commit()
    return metrics
