"""Train an open_clip model from scratch with the contrastive (InfoNCE) loss on a dataset of this project.

As the original's from-scratch MIMIC-CXR / CC3M models: the train split with its *noisy* captions or labels
(optionally LEMoN-filtered: keep the N pairs a previous run scored cleanest). The result is an open_clip
checkpoint folder (``open_clip_config.json`` + ``open_clip_model.safetensors`` + ``train_info.json``) that
``--clip_model /that/folder`` loads. ``train_state.pt`` beside it is written after every epoch; an
interrupted run resumes from it. Seeded: same config, same data order and initial weights.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lemon import io
from lemon.errors import LemonError, UnknownNameError

log = logging.getLogger(__name__)

#: model configs of our own (open_clip's format), beside open_clip's built-in architectures
CUSTOM_MODELS: dict[str, dict[str, Any]] = {
    "lemon-tiny": {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    },
    "lemon-demo": {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 24,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    },
}


@dataclass
class TrainConfig:
    """Everything a from-scratch training run depends on (see train_clip_from_scratch.py --help)."""

    output_dir: str
    dataset: str = "demo"
    split: str = "train"
    data_seed: int = 0
    noise_type: str | None = None
    noise_level: float = 0.0
    data_options: dict[str, Any] = field(
        default_factory=dict
    )  # other run_lemon data flags (data_dir, ...)
    filter_scores: str | None = None
    keep_top_n: int | None = None
    model: str = "lemon-tiny"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # 'auto' = bf16 autocast on CUDA, fp32 elsewhere
    resume: bool = True

    def validate(self) -> TrainConfig:
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise LemonError(
                f"need epochs >= 1, batch_size >= 2 and lr > 0, got {self.epochs}, "
                f"{self.batch_size}, {self.lr}."
            )
        if (self.filter_scores is None) != (self.keep_top_n is None):
            raise LemonError(
                "--filter_scores and --keep_top_n go together: keep the N pairs of a previous run's "
                "scores.csv with the lowest score."
            )
        if self.precision not in ("auto", "fp32", "bf16"):
            raise LemonError(
                f"Unknown training precision '{self.precision}'. Available: auto, fp32, bf16."
            )
        return self


def model_config(model: str) -> dict[str, Any]:
    """An open_clip model config: one of CUSTOM_MODELS, an open_clip architecture, or a JSON file (either
    a bare model config or ``{"model_cfg": ...}``)."""
    import open_clip

    if model in CUSTOM_MODELS:
        return copy.deepcopy(CUSTOM_MODELS[model])
    path = Path(model).expanduser()
    if path.suffix == ".json" and path.is_file():
        cfg = json.loads(path.read_text(encoding="utf-8"))
        return cfg.get("model_cfg", cfg)
    if model in open_clip.list_models():
        return copy.deepcopy(open_clip.get_model_config(model))
    raise UnknownNameError(
        f"Unknown model '{model}'. Use one of {', '.join(CUSTOM_MODELS)}, an open_clip "
        "architecture (open_clip.list_models(), e.g. ViT-B-32) or a model-config .json file."
    )


def build_model(model_cfg: dict[str, Any]):
    """A randomly initialised open_clip model (CLIP, or CustomTextCLIP for custom text towers)."""
    import open_clip

    cfg = copy.deepcopy(model_cfg)
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"]["hf_model_pretrained"] = False  # from scratch means from scratch
    cls = open_clip.CustomTextCLIP if custom else open_clip.CLIP
    return cls(**cfg, output_dict=True)


def preprocess_config(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """open_clip's default inference preprocessing at the model's image size (saved with the weights)."""
    from open_clip.transform import PreprocessCfg

    size = model_cfg["vision_cfg"].get("image_size", 224)
    return asdict(PreprocessCfg(size=size))


def save_open_clip(model, model_cfg: dict[str, Any], folder: Path) -> Path:
    """Write an open_clip checkpoint folder (weights, then config: a folder with both is complete)."""
    from safetensors.torch import save as save_safetensors

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    io.atomic_write_bytes(folder / "open_clip_model.safetensors", save_safetensors(state))
    io.atomic_write_json(
        folder / "open_clip_config.json",
        {"model_cfg": model_cfg, "preprocess_cfg": preprocess_config(model_cfg)},
    )
    return folder


def keep_cleanest(split, scores_csv: str, top_n: int, texts: list[str]):
    """The ``top_n`` pairs of ``split`` with the lowest score in a previous run's scores.csv (train rows);
    ``scores_csv`` may also be that run's folder."""
    import pandas as pd

    path = Path(scores_csv).expanduser()
    if path.is_dir():
        path = path / "scores.csv"
    if not path.is_file():
        raise LemonError(f"--filter_scores {path}: file not found (a run folder's scores.csv).")
    df = pd.read_csv(path, keep_default_na=False)
    missing = {"split", "idx", "score"} - set(df.columns)
    if missing:
        raise LemonError(f"{path} lacks columns {sorted(missing)}: not a run_lemon scores.csv.")
    rows = df[df["split"] == "train"]
    if rows.empty:
        raise LemonError(
            f"{path} has no train rows (was that run made with --skip_train?); rerun without it."
        )
    idx = rows["idx"].to_numpy(np.int64)
    if (
        len(rows) != len(split)
        or idx.max() >= len(split)
        or (
            "text" in rows
            and not np.array_equal(
                rows["text"].astype(str).to_numpy(),
                np.asarray(texts, dtype=object)[idx].astype(str),
            )
        )
    ):
        raise LemonError(
            f"{path} does not match this train split ({len(rows)} scored rows, {len(split)} pairs, "
            "or different texts): score the same --dataset / --noise_type / --noise_level / "
            "--data_seed you train on."
        )
    if not 1 <= top_n <= len(rows):
        raise LemonError(f"--keep_top_n must be in [1, {len(rows)}], got {top_n}.")
    order = np.lexsort((idx, rows["score"].to_numpy(np.float64)))  # lowest score first, ties by idx
    return split.subset(np.sort(idx[order[:top_n]]))


def load_training_pairs(cfg: TrainConfig):
    """The (noisy, optionally filtered) split to train on, and its texts."""
    from lemon.config import RunConfig
    from lemon.data import DATASETS
    from lemon.data.loading import load_splits
    from lemon.noise import apply_noise

    dataset = DATASETS.get(cfg.dataset)()
    if dataset.precomputed:
        raise LemonError(
            f"--dataset {cfg.dataset} holds embeddings, not images: nothing to train a CLIP on."
        )
    run_cfg = RunConfig(
        output_dir=cfg.output_dir, dataset=cfg.dataset, data_seed=cfg.data_seed, **cfg.data_options
    )
    splits = load_splits(dataset, run_cfg)
    if cfg.noise_level > 0:
        splits = apply_noise(
            splits, cfg.noise_type or dataset.noise_types[0], cfg.noise_level, cfg.data_seed
        )
    if cfg.split not in splits.splits:
        raise LemonError(f"Unknown split '{cfg.split}'. Available: {', '.join(splits.splits)}.")
    split = splits[cfg.split]
    texts = split.prompts(run_cfg.prompt)
    if cfg.filter_scores is not None:
        split = keep_cleanest(split, cfg.filter_scores, cfg.keep_top_n, texts)
        texts = split.prompts(run_cfg.prompt)
    return split, texts


def train_clip(cfg: TrainConfig) -> Path:
    """Train (or resume) and write the checkpoint folder ``cfg.output_dir``; returns its path."""
    from lemon.embed.trainloop import run_training

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
