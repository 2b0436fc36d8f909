"""Training CLIP models from scratch (the paper's CC3M / MIMIC-CXR setting, and the offline demo's model).

``train_clip(TrainConfig(...))`` writes an open_clip checkpoint folder that ``--clip_model`` loads;
``train_clip_from_scratch.py`` is its command line.
"""

from __future__ import annotations

from lemon.train.config import TrainConfig
from lemon.train.data import keep_cleanest, load_training_pairs
from lemon.train.models import (
    CUSTOM_MODELS,
    build_model,
    model_config,
    preprocess_config,
    save_open_clip,
)
from lemon.train.run import train_clip

__all__ = [
    "CUSTOM_MODELS",
    "TrainConfig",
    "build_model",
    "keep_cleanest",
    "load_training_pairs",
    "model_config",
    "preprocess_config",
    "save_open_clip",
    "train_clip",
]
