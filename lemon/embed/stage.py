"""``embed_dataset``: noisy splits -> :class:`~lemon.features.Features`, through the embedding cache.

Images and texts are cached separately, keyed by content, so a second run (or another job of a sweep)
reads everything and never loads the model, and a change of noise re-embeds only the texts.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from lemon.data.base import DatasetSplits
from lemon.embed.batching import embed_images, embed_texts
from lemon.embed.cache import EmbeddingCache
from lemon.errors import LemonError
from lemon.features import Features, SplitFeatures
from lemon.paths import cache_root

log = logging.getLogger(__name__)


def embedder_name(splits: DatasetSplits, clip_model: str | None) -> str:
    """``--clip_model`` if given, else the dataset's ``default_embedder``, else ``huggingface_clip``."""
    from lemon.data import DATASETS
    from lemon.embed import DEFAULT_EMBEDDER

    if clip_model:
        return clip_model
    default = DATASETS.get(splits.name).default_embedder if splits.name in DATASETS else None
    return default or DEFAULT_EMBEDDER


def embed_dataset(splits: DatasetSplits, cfg: Any) -> Features:
    """Embed every split's images and observed texts (and, for classification, every class prompt).

    ``cfg`` is a :class:`lemon.config.RunConfig` (clip_model, device, precision, cache_dir, batch_size,
    num_workers, prompt). Returns unit-normalised Features; ``meta`` records the embedder, cache hits and
    misses, and the unreadable images each split skipped.
    """
    from lemon.data.loading import skipped_images
    from lemon.embed import build_embedder
    from lemon.pipeline import resolve_device

    root = cache_root(cfg.cache_dir)
    embedder = build_embedder(embedder_name(splits, cfg.clip_model), device=resolve_device(cfg.device),
                              precision=getattr(cfg, "precision", "auto"), cache_root=root)
    cache = EmbeddingCache(root)
    embed = _Embed(embedder, cache, splits.name, cfg.batch_size, cfg.num_workers)
    out: dict[str, SplitFeatures] = {}
    for name, split in splits.splits.items():
        if split.images is None:
            raise LemonError(f"split '{name}' of dataset '{splits.name}' has no images to embed.")
        ids = [str(i) for i in split.images.ids]
        texts = split.prompts(cfg.prompt)
        img = embed.images(ids, split.images, name)
        txt = embed.texts(texts, name)
        truth = splits.has_ground_truth
        out[name] = SplitFeatures(name, img, txt, np.asarray(texts, dtype=object), split.observed,
                                  split.clean if truth else None, split.is_mislabel if truth else None,
                                  image_refs=ids)
    label_prompt_txt, class_names = None, None
    if splits.task == "classification":
        class_names = [str(c) for c in (splits.class_names if splits.class_names is not None
                                        else splits["train"].class_names)]
        label_prompt_txt = embed.texts([cfg.prompt + c for c in class_names], "class prompts")
    meta = {"embedder": embedder.name, "embedder_id": embedder.id, "cache_root": str(root),
            "cache_hits": cache.hits, "cache_misses": cache.misses, "skipped_images": skipped_images(splits)}
    log.info("embeddings of %s with %s: %d cache hits, %d computed", splits.name, embedder.name,
             cache.hits, cache.misses)
    return Features(splits.task, out, label_prompt_txt, class_names, meta=meta)


class _Embed:
    """Cache lookups for one dataset and embedder (the dataset name joins the key: ids are per dataset)."""

    def __init__(self, embedder, cache: EmbeddingCache, dataset: str, batch_size: int, num_workers: int):
        self.embedder, self.cache, self.dataset = embedder, cache, dataset
        self.batch_size, self.num_workers = batch_size, num_workers

    def images(self, ids: Sequence[str], source: Any, split: str) -> np.ndarray:
        return self.cache.get_or_compute(
            self.embedder, f"image/{self.dataset}", ids,
            lambda: embed_images(self.embedder, source, self.batch_size, self.num_workers, f"{split} images"))

    def texts(self, texts: Sequence[str], what: str) -> np.ndarray:
        return self.cache.get_or_compute(
            self.embedder, "text", texts, lambda: embed_texts(self.embedder, texts, self.batch_size, what))

