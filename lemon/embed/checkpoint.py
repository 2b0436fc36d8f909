"""Local checkpoints (``--clip_model /path`` or ``local-dir:/path``) and the named from-scratch models.

A checkpoint folder is either open_clip's layout (``open_clip_config.json`` + ``open_clip_model.safetensors``
or another weights file; what ``train_clip_from_scratch.py`` writes) or transformers' (``config.json`` +
weights + tokenizer + ``preprocessor_config.json``; what ``save_pretrained`` writes). The layout is
recognised from the files, never from the name.

Named models (the original's ``--clip_model`` aliases such as ``mimic_clip_from_scratch_random``, and the
demo's ``demo_clip``) are checkpoint folders under ``<cache_root>/models/<name>``. A missing one fails with
the command that trains it; the demo's is trained on first use (it needs no download and takes a minute).
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lemon.core.errors import ModelNotFoundError
from lemon.embed.base import Embedder
from lemon.embed.registry import EMBEDDERS

log = logging.getLogger(__name__)
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pth",
)  # what open_clip / transformers look for in a folder


def _weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def checkpoint_layout(path: Path) -> str | None:
    """'open_clip' or 'transformers' when ``path`` (a folder, or a file inside one) holds a checkpoint of
    that layout, else None."""
    folder = path.parent if path.is_file() else path
    if not folder.is_dir() or not _weights(folder):
        return None
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return "open_clip"
    if (folder / "config.json").is_file():
        return "transformers"
    return None


def weights_problem(folder: Path) -> str | None:
    """Why the weights in a checkpoint folder cannot load (e.g. a file cut short by a full disk or a killed
    copy), or None. Cheap: safetensors headers against the file sizes; zip archives (torch.save) by their
    central directory."""
    for path in _weights(folder):
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError, safe_open

            try:
                with safe_open(str(path), "np"):
                    pass
            except (SafetensorError, OSError) as err:
                return f"{path} is damaged ({err})"
        elif _looks_zip(path) and not zipfile.is_zipfile(path):
            return f"{path} is damaged (a truncated zip archive)"
    return None


def _looks_zip(path: Path) -> bool:
    """A torch.save archive starts as a zip file: such a file that is no longer a valid zip was cut short."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


@EMBEDDERS.register("checkpoint", aliases=("local-dir",))
def checkpoint_embedder(
    arg: str | None = None,
    *,
    device: str = "cpu",
    precision: str = "auto",
    cache_root: Path | None = None,
    name: str | None = None,
) -> Embedder:
    """The embedder of a local checkpoint folder (or of the weights file inside one)."""
    from lemon.embed.hf_clip import HFClipEmbedder
    from lemon.embed.open_clip import OpenClipEmbedder

    path = Path(arg or "").expanduser()
    layout = checkpoint_layout(path) if arg else None
    folder = path.parent if path.is_file() else path
    problem = weights_problem(folder) if layout else None
    if problem:
        raise ModelNotFoundError(
            f"Checkpoint {folder}: {problem}; copy or download it again (or retrain it), then rerun."
        )
    if layout == "open_clip":
        files = _weights(folder)
        chosen = [p for p in files if p.name == OPEN_CLIP_WEIGHTS] or files
        if len(chosen) > 1 or (path.is_file() and path != chosen[0]):
            raise ModelNotFoundError(
                f"{folder} holds several weights files ({', '.join(p.name for p in files)}) "
                f"and open_clip would load {chosen[0].name}; keep one weights file per folder."
            )
        return OpenClipEmbedder(
            f"local-dir:{folder}",
            name=name or str(path),
            files=(folder / OPEN_CLIP_CONFIG, chosen[0]),
            device=device,
            precision=precision,
        )
    if layout == "transformers":
        return HFClipEmbedder(
            str(folder), name=name or str(path), device=device, precision=precision
        )
    raise ModelNotFoundError(
        f"{path} is not a model checkpoint: expected a folder with {OPEN_CLIP_CONFIG} + {OPEN_CLIP_WEIGHTS} "
        "(open_clip; train_clip_from_scratch.py writes these) or config.json + model.safetensors + tokenizer "
        "files (transformers save_pretrained); pass its path to --clip_model."
    )


@dataclass(frozen=True)
class NamedCheckpoint:
    """A from-scratch model kept at ``<cache_root>/models/<name>``; ``train`` are train_clip_from_scratch
    options that make it; ``auto_train`` trains it on first use (only for cheap, offline recipes)."""

    name: str
    train: dict[str, Any] = field(default_factory=dict)
    auto_train: bool = False
    note: str = ""

    def folder(self, cache_root: Path) -> Path:
        return Path(cache_root) / "models" / self.name

    def command(self, cache_root: Path) -> str:
        opts = " ".join(f"--{k} {v}" for k, v in self.train.items())
        return f"python train_clip_from_scratch.py {opts} --output_dir {self.folder(cache_root)}"


_MIMIC = {"dataset": "mimiccxr_caption", "noise_level": 0.4, "model": "ViT-B-32", "epochs": 30}
NAMED_CHECKPOINTS = (
    NamedCheckpoint(
        "demo_clip",
        {
            "dataset": "demo",
            "noise_type": "random",
            "noise_level": 0.4,
            "data_seed": 0,
            "model": "lemon-demo",
            "epochs": 12,
            "batch_size": 100,
            "lr": 2e-3,
            "warmup_steps": 40,
            "seed": 0,
        },
        auto_train=True,
    ),
    NamedCheckpoint("mimic_clip_from_scratch_random", {**_MIMIC, "noise_type": "random"}),
    NamedCheckpoint("mimic_clip_from_scratch_cat", {**_MIMIC, "noise_type": "cat"}),
    NamedCheckpoint(
        "cc3m_clip_from_scratch", {"dataset": "cc3m", "model": "ViT-B-32", "epochs": 30}
    ),
    NamedCheckpoint(
        "chexzero",
        note="CheXzero's weights are published by its authors; save them as an open_clip "
        "folder (open_clip_config.json + weights) at that path",
    ),
)


def _register(entry: NamedCheckpoint) -> None:
    @EMBEDDERS.register(entry.name)
    def build(
        arg: str | None = None,
        *,
        device: str = "cpu",
        precision: str = "auto",
        cache_root: Path | None = None,
    ) -> Embedder:
        from lemon.core.paths import cache_root as default_cache_root

        root = Path(cache_root) if cache_root is not None else default_cache_root()
        folder = entry.folder(root)
        problem = weights_problem(folder) if checkpoint_layout(folder) else None
        if checkpoint_layout(folder) is None or problem:
            how = entry.note or f"train it with: {entry.command(root)}"
            if problem and not entry.auto_train:
                raise ModelNotFoundError(
                    f"Model '{entry.name}': {problem}; delete {folder} and {how} (or pass "
                    "--clip_model /path/to/checkpoint)."
                )
            if not entry.auto_train:
                raise ModelNotFoundError(
                    f"Model '{entry.name}' is a local checkpoint expected in {folder}, "
                    f"which does not hold one; {how} (or pass --clip_model /path/to/checkpoint)."
                )
            train_named(entry, root, device)
        return checkpoint_embedder(str(folder), device=device, precision=precision, name=entry.name)

    build.__doc__ = (
        f"The from-scratch checkpoint '{entry.name}' at <cache_root>/models/{entry.name}."
    )


def train_named(entry: NamedCheckpoint, cache_root: Path, device: str) -> Path:
    """Train a named checkpoint into its cache folder (once, under a lock shared by concurrent jobs)."""
    from lemon.core.io import file_lock
    from lemon.train import TrainConfig, train_clip

    folder = entry.folder(cache_root)
    with file_lock(folder.parent / f".{entry.name}.lock"):
        problem = weights_problem(folder) if checkpoint_layout(folder) else None
        if problem:  # e.g. cut short by a full disk: a cache, so it is rebuilt
            log.warning("'%s': %s; training it again", entry.name, problem)
            shutil.rmtree(folder)
        if checkpoint_layout(folder) is None:
            log.warning(
                "first use of '%s': training it from scratch, once (a minute or so on a laptop CPU; "
                "cached in %s)",
                entry.name,
                folder,
            )
            train_clip(TrainConfig.from_flags(entry.train, output_dir=str(folder), device=device))
    return folder


for _entry in NAMED_CHECKPOINTS:
    _register(_entry)
