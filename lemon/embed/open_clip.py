"""open_clip models: ``open_clip:ARCH/PRETRAINED``, ``hf-hub:REPO`` and the ``biomed_clip`` alias.

``PRETRAINED`` is an open_clip tag (``open_clip.list_pretrained_tags_by_model(ARCH)``), a weights file
(``open_clip:ViT-B-32//abs/path/ckpt.pt``) or ``random`` for random initialisation (benchmarks, tests).
Local open_clip folders (``open_clip_config.json`` + weights, e.g. from ``train_clip_from_scratch.py``)
load through :mod:`lemon.embed.checkpoint`. open_clip ships its BPE vocabulary in the wheel, so any
architecture builds offline.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lemon.core.errors import LemonError, UnknownNameError
from lemon.embed.base import Embedder, hash_files, slug
from lemon.embed.hub import hub_session, missing_model, one_line
from lemon.embed.registry import EMBEDDERS

BIOMED_CLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
RANDOM_INIT = "random"


def check_tokenizer(tokenize, name: str) -> None:
    """Stop when a tokenizer maps different words to the same ids (a placeholder vocabulary loaded)."""
    import torch

    ids = {
        tuple(torch.as_tensor(tokenize([w])).reshape(-1).tolist()) for w in ("cat", "dog", "photo")
    }
    if len(ids) < 3:
        raise LemonError(
            f"The tokenizer of '{name}' gives the words 'cat', 'dog' and 'photo' the same tokens: "
            "its vocabulary did not load. Point --clip_model at a folder that holds the model's "
            "tokenizer files."
        )


class OpenClipEmbedder(Embedder):
    """An open_clip model; ``model_name`` may carry open_clip's 'hf-hub:' / 'local-dir:' schema."""

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        *,
        name: str | None = None,
        files: Sequence[Path] = (),
        device: str = "cpu",
        precision: str = "auto",
    ) -> None:
        super().__init__(name or model_name, device, precision)
        self.model_name, self.pretrained = model_name, pretrained
        self.files = tuple(files)  # local files that define the weights (hashed into the id)
        self.tokenizer: Any = None

    @property
    def from_hub(self) -> bool:
        local = (
            self.model_name.startswith("local-dir:") or self.pretrained == RANDOM_INIT or self.files
        )
        return not local

    @property
    def id(self) -> str:
        if not hasattr(self, "_id"):
            base = slug(
                f"open_clip-{self.model_name.split('local-dir:')[-1].rstrip('/').split('/')[-1]}"
                if self.files
                else f"open_clip-{self.model_name}-{self.pretrained or ''}"
            )
            self._id = f"{base}-{hash_files(self.files)}" if self.files else base
        return self._id

    @property
    def preprocessing(self) -> str:
        return f"{super().preprocessing}/open_clip-val-transform"

    @property
    def folder(self) -> Path | None:
        local = self.model_name.startswith("local-dir:") and self.files
        return Path(self.files[0]).parent if local else None

    def hub_weights(self) -> tuple[str, str] | None:
        hub = self.model_name.startswith("hf-hub:")
        return (self.model_name[len("hf-hub:") :], "open_clip_config.json") if hub else None

    def _load(self) -> None:
        import open_clip

        random_init = self.pretrained == RANDOM_INIT
        with hub_session() as online:
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.model_name,
                    pretrained=None if random_init else self.pretrained,
                    load_weights=not random_init,
                    pretrained_text=not random_init,
                    device=self.device,
                )
                self.tokenizer = open_clip.get_tokenizer(self.model_name)
            except (OSError, RuntimeError, ValueError) as err:
                if self.from_hub:
                    raise missing_model(
                        self.name,
                        f"of open_clip '{self.model_name}' ({self.pretrained or 'hub'})",
                        online,
                        err,
                    ) from None
                raise LemonError(
                    f"Cannot load open_clip model '{self.name}': {one_line(err)}"
                ) from None
        self.model, self._preprocess = model, preprocess
        check_tokenizer(self.tokenizer, self.name)
        with self._inference():
            self._dim = int(self._text_features(["a"]).shape[-1])

    def _image_features(self, pixels: Any) -> Any:
        return self.model.encode_image(pixels)

    def _text_features(self, texts: list[str]) -> Any:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def _split_arch(arg: str | None) -> tuple[str, str]:
    """'ARCH/PRETRAINED' -> (ARCH, PRETRAINED), validated against open_clip's registry."""
    import open_clip

    arch, _, pretrained = (arg or "").partition("/")
    if arch not in open_clip.list_models():
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownNameError(
            f"Unknown open_clip architecture '{arch}' in 'open_clip:{arg}'; expected "
            f"open_clip:ARCH/PRETRAINED with ARCH from open_clip.list_models().{hint}"
        )
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if pretrained not in (*tags, RANDOM_INIT) and not Path(pretrained).expanduser().is_file():
        raise UnknownNameError(
            f"Unknown pretrained weights '{pretrained}' for open_clip '{arch}'; use one of "
            f"{', '.join(tags) or '(none)'}, '{RANDOM_INIT}' (random init) or a weights file: "
            f"open_clip:{arch}/TAG."
        )
    return arch, pretrained


@EMBEDDERS.register("open_clip")
def open_clip_embedder(
    arg: str | None = None,
    *,
    device: str = "cpu",
    precision: str = "auto",
    cache_root: Path | None = None,
) -> OpenClipEmbedder:
    """``open_clip:ARCH/PRETRAINED`` (tag, weights file, or 'random')."""
    arch, pretrained = _split_arch(arg)
    path = Path(pretrained).expanduser()
    files = (path,) if path.is_file() else ()
    return OpenClipEmbedder(
        arch,
        str(path) if files else pretrained,
        name=f"open_clip:{arg}",
        files=files,
        device=device,
        precision=precision,
    )


@EMBEDDERS.register("hf-hub")
def hf_hub_embedder(
    arg: str | None = None,
    *,
    device: str = "cpu",
    precision: str = "auto",
    cache_root: Path | None = None,
) -> OpenClipEmbedder:
    """``hf-hub:ORG/REPO``: an open_clip model published on the Hugging Face Hub."""
    if not arg:
        raise LemonError("'hf-hub:' needs a repository, e.g. --clip_model hf-hub:" + BIOMED_CLIP)
    return OpenClipEmbedder(
        f"hf-hub:{arg}", name=f"hf-hub:{arg}", device=device, precision=precision
    )


@EMBEDDERS.register("biomed_clip")
def biomed_clip(
    arg: str | None = None,
    *,
    device: str = "cpu",
    precision: str = "auto",
    cache_root: Path | None = None,
) -> OpenClipEmbedder:
    """BiomedCLIP (the original's default for MIMIC-CXR), from the Hub through open_clip."""
    return OpenClipEmbedder(
        f"hf-hub:{BIOMED_CLIP}", name="biomed_clip", device=device, precision=precision
    )
