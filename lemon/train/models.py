"""Model configs and checkpoint files of CLIP models trained from scratch (open_clip's format).

A model is one of our small configs (``lemon-tiny``, ``lemon-demo``), an open_clip architecture, or a
model-config JSON; :func:`build_model` initialises it randomly and :func:`save_open_clip` writes the folder
that ``--clip_model`` loads (weights first, then the config: a folder holding both is complete).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lemon.core import io
from lemon.core.errors import UnknownNameError

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
