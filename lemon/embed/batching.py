"""Batched encoding: a DataLoader decodes and preprocesses images in worker processes while the model runs.

Texts are deduplicated before encoding (classification prompts repeat C distinct strings over N samples)
and scattered back, so the cost follows the number of distinct texts.

An image that passes the loaders' header check but fails to decode (a truncated JPEG raises "image file is
truncated" only when its pixels are read) must not crash a long embedding job: with ``flag_unreadable`` a
worker returns a blank placeholder and a False flag instead, and :func:`embed_images` marks that row NaN for
the caller (:func:`lemon.embed.stage.embed_dataset`) to drop and count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lemon.data.images import decode_errors

__all__ = ["PreprocessedImages", "decode_errors", "embed_images", "embed_texts", "image_loader"]
log = logging.getLogger(__name__)


class PreprocessedImages:
    """torch-style dataset: item i = ``transform(source[i])`` (runs inside DataLoader workers).

    With ``flag_unreadable`` item i is ``(pixels, ok)``: an image that fails to decode gives the transform of
    a blank image and ``ok = False`` instead of raising inside a worker.
    """

    def __init__(self, source: Any, transform: Callable, flag_unreadable: bool = False) -> None:
        self.source = source
        self.transform = transform
        self.flag_unreadable = flag_unreadable

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        if not self.flag_unreadable:
            return self.transform(self.source[i])
        try:
            return self.transform(self.source[i]), True
        except decode_errors() as err:
            from PIL import Image

            ref = self.source.ids[i] if hasattr(self.source, "ids") else i
            log.debug(
                "image %s cannot be decoded (%s: %s); placeholder", ref, type(err).__name__, err
            )
            return self.transform(Image.new("RGB", (32, 32))), False


def image_loader(
    source: Any,
    transform: Callable,
    batch_size: int,
    num_workers: int,
    device: str,
    shuffle_generator=None,
    drop_last: bool = False,
    flag_unreadable: bool = False,
):
    """DataLoader over ``source`` with workers (none for a single batch) and pinned memory on CUDA.

    Batches are pixel tensors, or ``(pixels, ok)`` pairs with ``flag_unreadable`` (see PreprocessedImages).
    """
    from torch.utils.data import DataLoader

    workers = num_workers if len(source) > batch_size else 0
    dataset = PreprocessedImages(source, transform, flag_unreadable)
    return DataLoader(
        dataset,  # type: ignore[arg-type]  # map-style; torch types it Dataset
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
        shuffle=shuffle_generator is not None,
        generator=shuffle_generator,
        drop_last=drop_last,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )


def embed_images(
    embedder,
    source: Any,
    batch_size: int = 128,
    num_workers: int = 2,
    desc: str = "images",
    decode: str = "cpu",
) -> np.ndarray:
    """(n, dim) float32 embeddings of every image of an ImageSource, in order.

    Rows of images that cannot be decoded are NaN (never a crash); the caller drops and counts them.
    ``decode``: 'cpu' (PIL and the model's own transform, in DataLoader workers) or 'gpu' (workers read
    bytes; decoding and preprocessing run on the embedder's device: :mod:`lemon.embed.gpu_decode`).
    """
    from tqdm.auto import tqdm

    if decode == "gpu":
        from lemon.embed.gpu_decode import embed_images_gpu_decode

        return embed_images_gpu_decode(embedder, source, batch_size, num_workers, desc)
    embedder.load()
    loader = image_loader(
        source, embedder.preprocess, batch_size, num_workers, embedder.device, flag_unreadable=True
    )
    out, ok = [], []
    for pixels, good in tqdm(loader, desc=f"embed {desc}", unit="batch", leave=False, disable=None):
        out.append(embedder.encode_images(pixels))
        ok.append(np.asarray(good, dtype=bool))
    if not out:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    emb, decoded = np.concatenate(out), np.concatenate(ok)
    if not decoded.all():
        emb[~decoded] = np.nan
        log.warning(
            "%s: %d of %d images could not be decoded", desc, int((~decoded).sum()), len(decoded)
        )
    return emb


def embed_texts(
    embedder, texts: Sequence[str], batch_size: int = 128, desc: str = "texts"
) -> np.ndarray:
    """(n, dim) float32 embeddings of ``texts``, each distinct text encoded once."""
    from tqdm.auto import tqdm

    embedder.load()
    unique, inverse = np.unique(
        np.asarray([str(t) for t in texts], dtype=object), return_inverse=True
    )
    out = [
        embedder.encode_texts(list(unique[s : s + batch_size]))
        for s in tqdm(
            range(0, len(unique), batch_size),
            desc=f"embed {desc}",
            unit="batch",
            leave=False,
            disable=None,
        )
    ]
    if not out:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.concatenate(out)[inverse.reshape(-1)]
