"""Inputs of the Python API: checked once at the door (one-line errors), raw images and texts embedded.

Raw inputs go through the same embedders (:func:`lemon.embed.build_embedder`) and the same content-keyed
cache (:class:`lemon.embed.cache.EmbeddingCache`) as ``run_lemon``, so a second call reads the cache and
never loads the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lemon.core.errors import LemonError
from lemon.core.paths import quote_path
from lemon.data.base import FileImages, digest


class PilImages:
    """In-memory PIL images as an image source; the cache key digests their pixels."""

    def __init__(self, images: Sequence[Any]) -> None:
        self.images = list(images)
        self.ids = [f"pil/{i}" for i in range(len(self.images))]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from lemon.data.images import to_rgb

        return to_rgb(self.images[i])

    def fingerprint(self) -> str:
        return digest(*(f"{im.mode}{im.size}".encode() + im.tobytes() for im in self.images))


def image_source(images: Sequence[Any]) -> FileImages | PilImages:
    """File paths (str / PathLike) or PIL images, all of one kind; a missing file is a one-line error."""
    from PIL import Image

    items = list(images)
    if all(isinstance(x, Image.Image) for x in items):
        return PilImages(items)
    if not all(isinstance(x, (str, os.PathLike)) for x in items):
        kinds = sorted({type(x).__name__ for x in items})
        raise LemonError(
            f"images must be file paths or PIL images (one kind), got {', '.join(kinds)}; pass "
            "image_embeddings for arrays."
        )
    from lemon.data.images import file_url_path, is_url

    local = [file_url_path(str(x)) if is_url(x) else x for x in items]  # file:// URLs are paths
    remote = [i for i, x in enumerate(local) if x is None]
    if remote:
        raise LemonError(
            f"{len(remote)} of {len(items)} images are URLs (first: images[{remote[0]}] = "
            f"{quote_path(items[remote[0]])}); lemon reads local files only: download them first "
            "and pass the local paths."
        )
    paths = [str(Path(x).expanduser().resolve()) for x in local if x is not None]  # URLs refused
    missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        raise LemonError(
            f"{len(missing)} of {len(paths)} images not found (first: images[{missing[0]}] = "
            f"{quote_path(items[missing[0]])}); fix the paths or drop those pairs."
        )
    return FileImages(Path(), paths)


def embed_inputs(
    images: Sequence[Any] | None,
    texts: Sequence[str] | None,
    model: Any,
    cache_dir: str | os.PathLike | None,
    device: str,
    batch_size: int,
    num_workers: int,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(image embeddings or None, text embeddings or None) of the raw inputs given, through the cache.

    ``model``: a ``--clip_model`` value (name, ``open_clip:ARCH/TAG``, checkpoint folder) or an Embedder.
    """
    from lemon.core.device import resolve_device
    from lemon.core.paths import cache_root
    from lemon.embed import build_embedder
    from lemon.embed.base import Embedder
    from lemon.embed.batching import embed_images, embed_texts
    from lemon.embed.cache import EmbeddingCache
    from lemon.embed.registry import DEFAULT_EMBEDDER

    root = cache_root(cache_dir)
    if isinstance(model, Embedder):
        embedder = model
    else:
        name = DEFAULT_EMBEDDER if model is None else str(model)
        embedder = build_embedder(name, device=resolve_device(device), cache_root=root)
    cache = EmbeddingCache(root)
    img = txt = None
    if images is not None:
        source = image_source(images)
        img = cache.get_or_compute(
            embedder,
            "image/api",
            source.ids,
            lambda: embed_images(embedder, source, batch_size, num_workers, "images"),
            content=source.fingerprint(),
        )
        bad = ~np.isfinite(img).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise LemonError(
                f"{int(bad.sum())} of {len(img)} images cannot be decoded (first: images[{first}] = "
                f"{images[first]}); repair them or drop those pairs."
            )
    if texts is not None:
        strings = [str(t) for t in texts]
        txt = cache.get_or_compute(
            embedder, "text", strings, lambda: embed_texts(embedder, strings, batch_size, "texts")
        )
    return img, txt


def check_embeddings(x: Any, name: str) -> np.ndarray:
    """A 2-D finite float array, or a one-line error naming the first bad row."""
    a = np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise LemonError(
            f"{name} must be a 2-D numeric array (n, d), got shape {a.shape} {a.dtype}."
        )
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise LemonError(
            f"{name} has NaN/inf values in {int(bad.sum())} rows (first: row "
            f"{int(np.flatnonzero(bad)[0])}); drop those pairs or embed them again."
        )
    return a


def check_labels(labels: Any) -> tuple[np.ndarray, str]:
    """(labels as an object array, task): captions (strings) or class ids (integers), none missing."""
    import pandas as pd

    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1:
        raise LemonError(
            f"labels must be 1-D (one label or caption per pair), got shape {arr.shape}."
        )
    missing = pd.isna(arr)
    if missing.any():
        raise LemonError(
            f"labels has {int(missing.sum())} missing values (first: row "
            f"{int(np.flatnonzero(missing)[0])}); drop those pairs or fill them in."
        )
    if all(isinstance(x, str) for x in arr):
        return arr, "captioning"
    numeric = [x for x in arr if isinstance(x, (int, np.integer, float, np.floating))]
    if len(numeric) == len(arr) and not any(isinstance(x, bool) for x in arr):
        values = np.asarray(numeric, dtype=np.float64)
        if np.all(values == np.round(values)):
            return values.astype(np.int64).astype(object), "classification"
    kinds = sorted({type(x).__name__ for x in arr})
    raise LemonError(
        f"labels must be all strings (captions) or all integers (class ids), got {', '.join(kinds)}."
    )


def check_known(
    known_issue_idx: Any, known_is_issue: Any, n: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(indices, truth) of the verified pairs, or None; strings, NaN, out-of-range rows are errors."""
    if known_issue_idx is None and known_is_issue is None:
        return None
    if known_issue_idx is None or known_is_issue is None:
        raise LemonError(
            "known_issue_idx and known_is_issue must be given together, with the same length."
        )
    idx, truth = np.asarray(known_issue_idx), np.asarray(known_is_issue)
    if idx.ndim != 1 or truth.ndim != 1 or len(idx) != len(truth):
        raise LemonError(
            "known_issue_idx and known_is_issue must be given together, with the same length, got "
            f"shapes {idx.shape} and {truth.shape}."
        )
    if len(idx) == 0:
        raise LemonError("known_issue_idx is empty; pass None when no pair is verified.")
    if not np.issubdtype(idx.dtype, np.integer):
        raise LemonError(f"known_issue_idx must hold integer row indices, got dtype {idx.dtype}.")
    if idx.min() < 0 or idx.max() >= n:
        raise LemonError(
            f"known_issue_idx must index the data, in [0, {n}); got values in "
            f"[{idx.min()}, {idx.max()}]."
        )
    if truth.dtype == bool:
        return idx.astype(np.int64), truth
    if np.issubdtype(truth.dtype, np.number) and np.isin(truth, (0, 1)).all():
        return idx.astype(np.int64), truth.astype(bool)
    example = next((x for x in truth.tolist() if x not in (0, 1, True, False)), truth[0])
    raise LemonError(
        f"known_is_issue must hold booleans (or 0/1), got {type(example).__name__} values such as "
        f"{example!r}; convert them first (for strings: np.asarray(values) == 'True')."
    )


TASKS = ("auto", "classification", "captioning")


def class_labels(
    labels: Any, texts: Any, text_embeddings: Any, task: str
) -> tuple[Any, Any, list[str] | None]:
    """(labels, texts, class names): string ``labels`` without ``texts`` or text embeddings that are
    class names (``task``, or repeats under 'auto') become class ids and prompts 'A photo of a <name>',
    as run_lemon reads a label column; anything else passes through (class names None)."""
    import warnings

    from lemon.data.base import DEFAULT_PROMPT

    if task not in TASKS:
        raise LemonError(f"task must be one of {', '.join(TASKS)}, got {task!r}.")
    if labels is None or texts is not None or text_embeddings is not None or task == "captioning":
        return labels, texts, None
    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1 or not len(arr) or not all(isinstance(x, str) for x in arr):
        return labels, texts, None
    names, ids = np.unique(arr.astype(str), return_inverse=True)
    if task == "auto":
        if len(names) >= len(arr) / 2:
            return labels, texts, None
        warnings.warn(
            f"labels: {len(names)} distinct strings over {len(arr)} pairs are read as class names "
            f"(prompts '{DEFAULT_PROMPT}{names[0]}', as run_lemon reads a label column); pass "
            "task='captioning' to score them as captions, or task='classification' to silence this.",
            stacklevel=4,
        )
    prompts = [DEFAULT_PROMPT + str(n) for n in names[ids.reshape(-1)]]
    return ids.reshape(-1).astype(np.int64), prompts, [str(n) for n in names]
