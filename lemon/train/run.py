"""Train an open_clip model from scratch with the contrastive (InfoNCE) loss on a dataset of this project.

As the original's from-scratch MIMIC-CXR / CC3M models: the train split with its *noisy* captions or labels
(optionally LEMoN-filtered: keep the N pairs a previous run scored cleanest). The result is an open_clip
checkpoint folder (``open_clip_config.json`` + ``open_clip_model.safetensors`` + ``train_info.json``) that
``--clip_model /that/folder`` loads. ``train_state.pt`` beside it is written after every epoch; an
interrupted run resumes from it. Seeded: same config, same data order and initial weights.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from lemon import io
from lemon.train.config import TrainConfig
from lemon.train.data import load_training_pairs
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
    model_cfg = model_config(cfg.model)
    model, history = run_training(cfg, model_cfg, split, texts, out)
    save_open_clip(model, model_cfg, out)
    io.atomic_write_json(
        out / "train_info.json",
        {
            "config": asdict(cfg),
            "n_pairs": len(split),
            "loss_per_epoch": history,
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
