"""``embed_dataset``: noisy splits -> :class:`~lemon.data.features.Features`, through the embedding cache.

Images and texts are cached separately, keyed by content, so a second run (or another job of a sweep)
reads everything and never loads the model, and a change of noise re-embeds only the texts.

Images that fail to decode while embedding come back as NaN rows (:func:`lemon.embed.batching.embed_images`);
their pairs are dropped from the split (every per-row array alike) and recorded in its ``dropped``
*before* the texts are embedded. The image cache entry keeps those NaN rows: it is keyed by the full ordered
id list it was computed for, so its rows stay aligned with those ids, and a later run that reads it drops
the same pairs without decoding anything. No entry is ever keyed by a list the rows do not match.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from lemon.core.errors import LemonError
from lemon.core.npy import finite_rows
from lemon.core.paths import quote_path
from lemon.data.base import (
    UNDECODABLE_IMAGE,
    DatasetSplits,
    Dropped,
    PairSplit,
)
from lemon.data.features import Features, Provenance, SplitFeatures
from lemon.embed.base import Embedder, EmbedOptions
from lemon.embed.batching import embed_images, embed_texts
from lemon.embed.cache import EmbeddingCache

log = logging.getLogger(__name__)


def embedder_name(dataset: str, clip_model: str | None) -> str:
    """``--clip_model`` if given, else the dataset's ``default_embedder``, else ``huggingface_clip``."""
    from lemon.data import DATASETS
    from lemon.embed.registry import DEFAULT_EMBEDDER

    if clip_model:
        return clip_model
    default = DATASETS.get(dataset).default_embedder if dataset in DATASETS else None
    return default or DEFAULT_EMBEDDER


def embed_dataset(
    splits: DatasetSplits,
    embedder: Embedder,
    cache: EmbeddingCache,
    options: EmbedOptions | None = None,
) -> Features:
    """Embed every split's images and observed texts (and, for classification, every class prompt).

    ``options`` (:class:`~lemon.embed.base.EmbedOptions`): the class prompt, the batch size and loader
    workers, how the cache recognises image files and where images are decoded. Returns unit-normalised
    Features whose provenance records the embedder, the cache hits and misses, and every pair not scored
    (dropped by the loader, or here when its image cannot be decoded).
    """
    options = options or EmbedOptions()
    prompt = options.prompt
    out: dict[str, SplitFeatures] = {}
    dropped: dict[str, Dropped] = {}
    embed = _Embed(embedder, cache, splits.name, options)
    for name, split in splits.splits.items():
        if split.images is None:
            raise LemonError(f"split '{name}' of dataset '{splits.name}' has no images to embed.")
        ids = [str(i) for i in split.images.ids]
        img = embed.images(ids, split.images, name)
        split, img, ids, rows = drop_undecodable(split, img, ids, splits.name)
        dropped[name] = split.dropped
        texts = split.prompts(prompt)
        txt = embed.texts(texts, name)
        truth = splits.has_ground_truth
        out[name] = SplitFeatures(
            name,
            img,
            txt,
            np.asarray(texts, dtype=object),
            split.observed,
            split.clean if truth else None,
            split.is_mislabel if truth else None,
            ids=rows,
            image_refs=list(split.given_images()),
            source_rows=split.source_rows,
            images=split.images,
        )
    if len(splits.dropped):
        dropped["before splitting"] = splits.dropped
    label_prompt_txt, class_names = None, None
    if splits.task == "classification":
        names = splits.class_names if splits.class_names is not None else splits["train"].classes
        class_names = [str(c) for c in names]
        label_prompt_txt = embed.texts([prompt + c for c in class_names], "class prompts")
    provenance = Provenance(
        source=splits.name,
        embedder=embedder.name,
        embedder_id=embedder.id,
        cache_root=None if cache.root is None else str(cache.root.parent),
        cache_hits=cache.hits,
        cache_misses=cache.misses,
        dropped=dropped,
    )
    log.info(
        "embeddings of %s with %s: %d cache hits, %d computed",
        splits.name,
        embedder.name,
        cache.hits,
        cache.misses,
    )
    return Features(splits.task, out, label_prompt_txt, class_names, provenance=provenance)


def drop_undecodable(
    split: PairSplit, img: np.ndarray, ids: list[str], dataset: str
) -> tuple[PairSplit, np.ndarray, list[str], np.ndarray]:
    """Drop the pairs whose image embedding is not finite (the image could not be decoded), recorded in
    the split's ``dropped``.

    Returns the kept split, image embeddings and image ids, and the kept rows' positions in the loaded split
    (the ``idx`` of scores.csv, so that it still indexes the dataset as loaded, e.g. for the report).
    """
    ok = finite_rows(img)
    if ok.all():
        return split, img, ids, np.arange(len(ids))
    keep, bad = np.flatnonzero(ok), np.flatnonzero(~ok)
    if not len(keep):
        raise LemonError(
            f"Dataset '{dataset}': no image of the '{split.split}' split can be decoded (first: "
            f"{ids[0]}); check the files (see DataSources.md#{dataset})."
        )
    log.warning(
        "%s %s: not scoring %d undecodable image(s) (first: %s): the header reads but the pixels do "
        "not (a truncated or damaged file); each is listed with its reason in dropped.csv.",
        dataset,
        split.split,
        len(bad),
        quote_path(ids[bad[0]]),
    )
    kept = split.drop(ok, UNDECODABLE_IMAGE)
    return kept, img[keep], [ids[i] for i in keep], keep


def image_kind(dataset: str, decode: str = "cpu") -> str:
    """The cache kind of a dataset's images (image ids are only unique within a dataset; pixels decoded on
    the GPU differ from PIL's by rounding, so they are kept apart)."""
    return f"image/{dataset}" + ("" if decode == "cpu" else f"/decode-{decode}")


class _Embed:
    """Cache lookups for one dataset and embedder (the dataset name joins the key: ids are per dataset)."""

    def __init__(
        self, embedder: Embedder, cache: EmbeddingCache, dataset: str, options: EmbedOptions
    ) -> None:
        self.embedder, self.cache, self.dataset = embedder, cache, dataset
        self.batch_size, self.num_workers = options.batch_size, options.num_workers
        self.decode = options.image_decode
        self.content = options.image_identity == "content"

    def images(self, ids: Sequence[str], source: Any, split: str) -> np.ndarray:
        return self.cache.get_or_compute(
            self.embedder,
            image_kind(self.dataset, self.decode),
            ids,
            lambda: embed_images(
                self.embedder,
                source,
                self.batch_size,
                self.num_workers,
                f"{split} images",
                self.decode,
            ),
            content=source.fingerprint(self.content),
        )

    def texts(self, texts: Sequence[str], what: str) -> np.ndarray:
        return self.cache.get_or_compute(
            self.embedder,
            "text",
            texts,
            lambda: embed_texts(self.embedder, texts, self.batch_size, what),
        )
