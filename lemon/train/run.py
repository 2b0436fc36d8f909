"""Train an open_clip model from scratch with the contrastive (InfoNCE) loss on a dataset of this project.

As the original's from-scratch MIMIC-CXR / CC3M models: the train split with its *noisy* captions or labels
(optionally LEMoN-filtered: keep the N pairs a previous run scored cleanest). The result is an open_clip
checkpoint folder (``open_clip_config.json`` + ``open_clip_model.safetensors`` + ``train_info.json``, which
records the images trained on) that ``--clip_model /that/folder`` loads. ``train_state.pt`` beside it is
written after every epoch; an interrupted run resumes from it. Seeded: same config, same data order and
initial weights. With ``folds = K`` it trains K such folders, ``fold_<f>`` without the images of fold f
(folds by image content, :func:`lemon.data.splitting.assign_folds`), for out-of-fold scoring.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lemon.core import io
from lemon.data.splitting import assign_folds
from lemon.train.config import TrainConfig
from lemon.train.data import load_training_pairs
from lemon.train.info import TRAIN_INFO, fold_dir, hex_ids
from lemon.train.loop import run_training
from lemon.train.models import model_config, save_open_clip

log = logging.getLogger(__name__)


def train_clip(cfg: TrainConfig) -> Path:
    """Train (or resume) and write the checkpoint folder ``cfg.output_dir``; returns its path."""
    cfg.validate()
    out = Path(cfg.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    split, texts = load_training_pairs(cfg)
    identity = split.identities()
    model_cfg = model_config(cfg.model)
    if cfg.folds == 1:
        _train_one(cfg, model_cfg, split, texts, identity, out)
    else:
        fold = assign_folds(identity, cfg.folds, cfg.data_seed)
        for f in range(cfg.folds):
            folder = fold_dir(out, f)
            if io.is_done(folder):
                log.info("fold %d/%d already trained in %s", f + 1, cfg.folds, folder)
                continue
            keep = np.flatnonzero(fold != f)
            _train_one(
                dataclasses.replace(cfg, output_dir=str(folder)),
                model_cfg,
                split.subset(keep),
                [texts[i] for i in keep],
                identity[keep],
                folder,
                desc=f"fold {f + 1}/{cfg.folds} ",
                extra={"fold": f},
            )
        io.atomic_write_json(
            out / TRAIN_INFO,
            {
                "config": asdict(cfg),
                "folds": cfg.folds,
                "n_pairs": len(split),
                "fold_pairs": np.bincount(fold, minlength=cfg.folds).tolist(),
                "held_out": [hex_ids(identity[fold == f]) for f in range(cfg.folds)],
                "seconds": round(time.time() - start, 1),
            },
        )
    log.info(
        "trained %s on %d pairs of %s in %.0f s -> %s",
        cfg.model,
        len(split),
        cfg.dataset,
        time.time() - start,
        out,
    )
    io.mark_done(out, time.time() - start)  # last: a sweep reads the folder as DONE only now
    return out


def _train_one(
    cfg: TrainConfig,
    model_cfg: dict[str, Any],
    split,
    texts: list[str],
    identity: np.ndarray,
    out: Path,
    desc: str = "",
    extra: dict[str, Any] | None = None,
) -> None:
    """One checkpoint folder: weights, then train_info.json (with the images trained on), then ``done``."""
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    model, history = run_training(cfg, model_cfg, split, texts, out, desc)
    save_open_clip(model, model_cfg, out)
    io.atomic_write_json(
        out / TRAIN_INFO,
        {
            "config": asdict(cfg),
            **(extra or {}),
            "n_pairs": len(split),
            "loss_per_epoch": history,
            "seconds": round(time.time() - start, 1),
            "train_identities": hex_ids(identity),
        },
    )
    io.mark_done(out, time.time() - start)
