"""transformers ``CLIPModel`` (the paper's default ``openai/clip-vit-base-patch32``): ``huggingface_clip``.

``--clip_model huggingface_clip`` uses the default repository; ``huggingface_clip:REPO_OR_FOLDER`` any
CLIP repository or a folder written by ``save_pretrained`` (model, tokenizer and image processor files).
After loading we check that the weights and the tokenizer vocabulary really loaded: offline,
``CLIPTokenizer.from_pretrained`` has been seen to return a 2-token vocabulary without raising.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lemon.core.errors import ModelNotFoundError
from lemon.embed.base import Embedder, hash_files, slug
from lemon.embed.hub import hub_session, missing_model, one_line
from lemon.embed.open_clip import check_tokenizer
from lemon.embed.registry import EMBEDDERS

DEFAULT_HF_CLIP = "openai/clip-vit-base-patch32"
_IGNORED_MISSING = ("position_ids",)  # buffers some versions do not save


class HFImageTransform:
    """PIL image -> (3, H, W) pixel tensor through the model's own image processor (picklable)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any):
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]


def check_vocabulary(tokenizer: Any, vocab_size: int, name: str) -> None:
    """The tokenizer must cover (almost) the model's vocabulary; a placeholder has a handful of tokens."""
    n = len(tokenizer)
    if n < 0.9 * vocab_size or n > vocab_size:
        raise ModelNotFoundError(
            f"The tokenizer of '{name}' has {n} tokens but the model's vocabulary has {vocab_size}: the "
            "tokenizer files did not load (offline, transformers can return a placeholder without raising). "
            "Put vocab.json and merges.txt (or tokenizer.json) beside the weights and pass --clip_model "
            "huggingface_clip:/path/to/that/folder."
        )
    check_tokenizer(lambda words: tokenizer(words)["input_ids"], name)


class HFClipEmbedder(Embedder):
    """A transformers CLIP model from the Hub (cache first) or from a local ``save_pretrained`` folder."""

    def __init__(
        self,
        source: str = DEFAULT_HF_CLIP,
        *,
        name: str | None = None,
        device: str = "cpu",
        precision: str = "auto",
    ) -> None:
        super().__init__(name or source, device, precision)
        self.source = source
        path = Path(source).expanduser()
        self.local = path if path.is_dir() else None
        self.tokenizer: Any = None
        self.max_length = 77

    @property
    def id(self) -> str:
        if not hasattr(self, "_id"):
            if self.local is None:
                self._id = slug(f"hf-{self.source}")
            else:
                files = [
                    p
                    for p in self.local.iterdir()
                    if p.is_file() and p.suffix in (".json", ".txt", ".safetensors", ".bin")
                ]
                self._id = f"{slug('hf-' + self.local.name)}-{hash_files(files)}"
        return self._id

    @property
    def preprocessing(self) -> str:
        return f"{super().preprocessing}/hf-image-processor"

    @property
    def folder(self) -> Path | None:
        return self.local

    def hub_weights(self) -> tuple[str, str] | None:
        return None if self.local is not None else (self.source, "config.json")

    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        source = str(self.local) if self.local is not None else self.source
        kwargs: dict[str, Any] = {"local_files_only": True} if self.local is not None else {}
        with hub_session() as online:
            try:
                # (model, info) with output_loading_info=True: transformers types the model alone
                loaded: Any = CLIPModel.from_pretrained(source, output_loading_info=True, **kwargs)
                model, info = loaded
                tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
                processor = AutoImageProcessor.from_pretrained(source, **kwargs)
            except (OSError, ValueError, KeyError) as err:
                if self.local is None:
                    raise missing_model(
                        self.name,
                        f"of the transformers CLIP repository '{self.source}'",
                        online,
                        err,
                    ) from None
                raise ModelNotFoundError(
                    f"Cannot load a transformers CLIP model from {self.local}: {one_line(err)}. The folder needs "
                    "config.json, the weights, the tokenizer and preprocessor_config.json (save_pretrained of "
                    "CLIPModel, CLIPTokenizer and CLIPImageProcessor)."
                ) from None
        missing = [k for k in info.get("missing_keys", ()) if not k.endswith(_IGNORED_MISSING)]
        if missing:
            raise ModelNotFoundError(
                f"The weights of '{self.name}' did not fully load: {len(missing)} tensors "
                f"missing (e.g. {min(missing)}); the model would be partly random. "
                "Re-download the model or pass a complete checkpoint folder."
            )
        text_cfg = model.config.text_config
        check_vocabulary(tokenizer, text_cfg.vocab_size, self.name)
        self.max_length = int(text_cfg.max_position_embeddings)
        self.model, self.tokenizer = model.to(self.device), tokenizer
        self._preprocess = HFImageTransform(processor)
        self._dim = int(model.config.projection_dim)

    @staticmethod
    def _pooled(out: Any):
        """transformers >= 5 returns a model output whose pooler_output is projected; older, a tensor."""
        return out if hasattr(out, "shape") else out.pooler_output

    def _image_features(self, pixels: Any) -> Any:
        return self._pooled(self.model.get_image_features(pixel_values=pixels))

    def _text_features(self, texts: list[str]) -> Any:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        return self._pooled(
            self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        )


@EMBEDDERS.register("huggingface_clip", aliases=("hf_clip",))
def huggingface_clip(
    arg: str | None = None,
    *,
    device: str = "cpu",
    precision: str = "auto",
    cache_root: Path | None = None,
) -> HFClipEmbedder:
    """``huggingface_clip`` (openai/clip-vit-base-patch32) or ``huggingface_clip:REPO_OR_FOLDER``."""
    source = arg or DEFAULT_HF_CLIP
    return HFClipEmbedder(
        source,
        name="huggingface_clip" if arg is None else f"huggingface_clip:{arg}",
        device=device,
        precision=precision,
    )
