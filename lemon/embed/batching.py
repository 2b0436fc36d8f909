"""Batched encoding: a DataLoader decodes and preprocesses images in worker processes while the model runs.

Texts are deduplicated before encoding (classification prompts repeat C distinct strings over N samples)
and scattered back, so the cost follows the number of distinct texts.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class PreprocessedImages:
    """torch-style dataset: item i = ``transform(source[i])`` (runs inside DataLoader workers)."""

    def __init__(self, source: Any, transform: Callable) -> None:
        self.source = source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        return self.transform(self.source[i])


def image_loader(source: Any, transform: Callable, batch_size: int, num_workers: int, device: str,
                 shuffle_generator=None, drop_last: bool = False):
    """DataLoader over ``source`` with workers (none for a single batch) and pinned memory on CUDA."""
    from torch.utils.data import DataLoader

    workers = num_workers if len(source) > batch_size else 0
    return DataLoader(PreprocessedImages(source, transform), batch_size=batch_size, num_workers=workers,
                      pin_memory=str(device).startswith("cuda"), shuffle=shuffle_generator is not None,
                      generator=shuffle_generator, drop_last=drop_last,
                      persistent_workers=False, prefetch_factor=4 if workers else None)


def embed_images(embedder, source: Any, batch_size: int = 128, num_workers: int = 2,
                 desc: str = "images") -> np.ndarray:
    """(n, dim) float32 embeddings of every image of an ImageSource, in order."""
    from tqdm.auto import tqdm

    embedder.load()
    loader = image_loader(source, embedder.preprocess, batch_size, num_workers, embedder.device)
    out = [embedder.encode_images(batch) for batch in
           tqdm(loader, desc=f"embed {desc}", unit="batch", leave=False, disable=None)]
    return np.concatenate(out) if out else np.zeros((0, embedder.dim), dtype=np.float32)


def embed_texts(embedder, texts: Sequence[str], batch_size: int = 128, desc: str = "texts") -> np.ndarray:
    """(n, dim) float32 embeddings of ``texts``, each distinct text encoded once."""
    from tqdm.auto import tqdm

    embedder.load()
    unique, inverse = np.unique(np.asarray([str(t) for t in texts], dtype=object), return_inverse=True)
    out = [embedder.encode_texts(list(unique[s:s + batch_size])) for s in
           tqdm(range(0, len(unique), batch_size), desc=f"embed {desc}", unit="batch", leave=False,
                disable=None)]
    if not out:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.concatenate(out)[inverse.reshape(-1)]
