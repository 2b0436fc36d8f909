"""The embedder contract: one interface over every CLIP-like model.

An :class:`Embedder` hides its model's preprocessing and tokenizer. It is cheap to construct: the weights
load on first use (``load``), so a run whose embeddings are all cached never touches the model. Its ``id``
(a folder name of the embedding cache) and ``preprocessing`` (a description) are known before loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.base import DEFAULT_PROMPT, IMAGE_IDENTITIES

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
#: where images are decoded: PIL in DataLoader workers, or nvJPEG and the model's resize/crop on the GPU
IMAGE_DECODES = ("cpu", "gpu")


@dataclass(frozen=True)
class EmbedOptions:
    """How a dataset's pairs are embedded (what travels with every embedding pass: whole, out of fold, in
    shards); the model itself, its device and precision are the embedder's.

    prompt : prefix of class names (classification texts are ``prompt + class name``)
    batch_size, num_workers : images (and texts) per batch; DataLoader workers decoding images
    image_identity : how the cache recognises image files, 'stat' (size and modification time) or
        'content' (a hash of their bytes; see :class:`~lemon.data.base.ImageSource`)
    image_decode : where images are decoded, 'cpu' or 'gpu' (:mod:`lemon.embed.gpu_decode`)
    """

    prompt: str = DEFAULT_PROMPT
    batch_size: int = 128
    num_workers: int = 2
    image_identity: str = "stat"
    image_decode: str = "cpu"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("image_identity", IMAGE_IDENTITIES),
            ("image_decode", IMAGE_DECODES),
        ):
            if getattr(self, name) not in allowed:
                raise LemonError(
                    f"Unknown {name} '{getattr(self, name)}'. Available: {', '.join(allowed)}."
                )
        if self.batch_size < 1 or self.num_workers < 0:
            raise LemonError("batch_size must be >= 1 and num_workers >= 0.")


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> fp16 on CUDA, fp32 elsewhere; fp16 needs CUDA (CPU half matmuls are slow or missing)."""
    if precision not in PRECISIONS:
        raise LemonError(f"Unknown precision '{precision}'. Available: {', '.join(PRECISIONS)}.")
    cuda = str(device).startswith("cuda")
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise LemonError(
            "--precision fp16 needs a CUDA device; use --precision fp32 or bf16 on CPU."
        )
    return precision


def slug(text: str, max_len: int = 80) -> str:
    """A filesystem-safe folder name for ``text`` (model ids contain '/' and ':')."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return out[:max_len] or "model"


def hash_files(paths: Sequence[Path]) -> str:
    """sha256 (first 12 hex digits) of the files' names and bytes: the identity of a local checkpoint."""
    h = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 23), b""):
                h.update(block)
    return h.hexdigest()[:12]


class Embedder(ABC):
    """Images and texts -> (n, dim) float32 embeddings in one shared space (not normalised here).

    Subclasses set ``name`` (what the user asked for), ``id`` (cache folder name; must change whenever the
    weights can), ``preprocessing`` (how images/texts are prepared; part of the cache key) and implement
    ``_load`` (set ``self.model``, ``self._preprocess``, ``self._dim``), ``_image_features(pixels)`` and
    ``_text_features(texts)``.
    """

    #: bumped when our own preprocessing code changes, so stale cache entries are never reused
    pipeline_version: ClassVar[str] = "1"

    def __init__(self, name: str, device: str = "cpu", precision: str = "auto") -> None:
        self.name = name
        self.device = str(device)
        self.precision = resolve_precision(precision, self.device)
        self.model: Any = None
        self._preprocess: Callable | None = None
        self._dim: int | None = None

    # ------------------------------------------------------------------ identity (no loading)
    @property
    @abstractmethod
    def id(self) -> str:
        """Stable, filesystem-safe identity of the weights (the cache folder name)."""

    @property
    def preprocessing(self) -> str:
        """What turns inputs into model inputs (part of the cache key and the cache sidecar)."""
        return f"{type(self).__name__}/v{self.pipeline_version}/{self.precision}"

    @property
    def folder(self) -> Path | None:
        """The local checkpoint folder the weights come from (None for hub models)."""
        return None

    def hub_weights(self) -> tuple[str, str] | None:
        """(Hugging Face repository, a file it must hold) when the weights come from the Hub, else None:
        what must be in the local Hugging Face cache to load offline."""
        return None

    # ------------------------------------------------------------------ loading
    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> Embedder:
        """Load weights, preprocessing and tokenizer (once); raises ModelNotFoundError when unavailable."""
        if not self.loaded:
            self._load()
            self.model.eval()
            log.info(
                "embedder %s loaded (dim %s, %s on %s)",
                self.name,
                self._dim,
                self.precision,
                self.device,
            )
        return self

    @abstractmethod
    def _load(self) -> None: ...

    @property
    def dim(self) -> int:
        self.load()
        assert self._dim is not None, f"{type(self).__name__}._load must set _dim"
        return self._dim

    @property
    def preprocess(self) -> Callable:
        """PIL image -> (3, H, W) float tensor, this model's own transform (picklable for DataLoader)."""
        self.load()
        assert self._preprocess is not None, f"{type(self).__name__}._load must set _preprocess"
        return self._preprocess

    # ------------------------------------------------------------------ encoding
    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """inference_mode, plus fp16/bf16 autocast where asked for."""
        import torch

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        autocast = (
            torch.autocast(device_type=device_type, dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            yield

    def encode_images(self, images: Sequence[Any] | Any) -> np.ndarray:
        """(n, dim) float32 embeddings of PIL images or of an already preprocessed (n, 3, H, W) batch."""
        import torch

        self.load()
        if not isinstance(images, torch.Tensor):
            preprocess = self.preprocess
            images = torch.stack([preprocess(im) for im in images])
        with self._inference():
            out = self._image_features(images.to(self.device, non_blocking=True))
        return out.float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 embeddings of one batch of texts (tokenised by the model's own tokenizer)."""
        self.load()
        with self._inference():
            out = self._text_features([str(t) for t in texts])
        return out.float().cpu().numpy()

    @abstractmethod
    def _image_features(self, pixels: Any) -> Any: ...

    @abstractmethod
    def _text_features(self, texts: list[str]) -> Any: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, id={self.id!r}, device={self.device!r})"
