"""Sharded embedding: a dataset's splits cut into N row ranges, each embedded by its own job, assembled into
the very cache entries a run reads.

Shard i embeds rows ``[i n / N, (i + 1) n / N)`` of every split (images, then the texts of the pairs whose
image decoded) and writes them as ``pieces/<split>.<image|text>.<i>.npy`` in the plan's folder
``<cache>/embeddings/<model id>/shards/<plan id>/``; its job folder ``jobs/<i>/`` gets ``done`` last. Rows
of a split keep the dataset's order, so a shard of a webdataset split reads a run of consecutive tars, and
a shard of a table a run of consecutive rows. The plan id digests the embedder, its preprocessing, every
split's image ids and content fingerprint and texts, N and the stored dtype: data that changed since
planning gives another plan, never a mix.

When every shard is done, :func:`assemble` concatenates the pieces into the entries
:func:`lemon.embed.stage.embed_dataset` looks up (images keyed by their ids and content, the texts of the
decodable pairs, the class prompts), unit-normalised, so a following ``run_lemon`` on the same data and
model reads them and embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lemon.core.errors import LemonError
from lemon.core.io import DONE
from lemon.core.npy import NpyWriter, finite_rows, open_rows
from lemon.data.base import UNDECODABLE_IMAGE, DatasetSplits, PairSplit
from lemon.embed.base import EmbedOptions
from lemon.embed.batching import embed_images, embed_texts
from lemon.embed.cache import EmbeddingCache
from lemon.embed.stage import image_kind

log = logging.getLogger(__name__)
DTYPES = ("float32", "float16")
CLASSES = "classes"


def shard_rows(n: int, n_shards: int, i: int) -> tuple[int, int]:
    """Row range ``[start, stop)`` of shard ``i`` of ``n_shards`` over ``n`` rows (sizes differ by <= 1)."""
    return i * n // n_shards, (i + 1) * n // n_shards


def class_prompts(splits: DatasetSplits, prompt: str) -> list[str] | None:
    """The class prompt texts a classification run embeds (None for captioning)."""
    if splits.task != "classification":
        return None
    names = splits.class_names if splits.class_names is not None else splits["train"].classes
    return [prompt + str(c) for c in names]


def plan_folder(
    cache: EmbeddingCache,
    embedder,
    splits: DatasetSplits,
    n_shards: int,
    dtype: str = "float32",
    options: EmbedOptions | None = None,
) -> Path:
    """The folder of this sharding of ``splits`` (see the module docstring for what its id digests); of
    ``options`` the class prompt and where images are decoded make the entries."""
    options = options or EmbedOptions()
    prompt, decode = options.prompt, options.image_decode
    if cache.root is None:
        raise LemonError("Sharded embedding needs a cache folder (--cache_dir); it is disabled.")
    if n_shards < 1:
        raise LemonError(f"--shards must be >= 1, got {n_shards}.")
    if dtype not in DTYPES:
        raise LemonError(f"Unknown --dtype '{dtype}'. Available: {', '.join(DTYPES)}.")
    h = hashlib.sha256()
    h.update(json.dumps([embedder.id, embedder.preprocessing, n_shards, dtype]).encode())
    for name, split in splits.splits.items():
        if split.images is None:
            raise LemonError(f"split '{name}' of dataset '{splits.name}' has no images to embed.")
        ids = [str(i) for i in split.images.ids]
        key = cache.key(embedder, image_kind(splits.name, decode), ids, split.images.fingerprint())
        h.update(json.dumps([name, key, split.prompts(prompt)], ensure_ascii=False).encode())
    h.update(json.dumps(class_prompts(splits, prompt)).encode())
    return cache.root / embedder.id / "shards" / f"{splits.name}-{h.hexdigest()[:16]}"


def _piece(folder: Path, split: str, kind: str, i: int) -> Path:
    return folder / "pieces" / f"{split}.{kind}.{i:05d}.npy"


def _write(path: Path, array: np.ndarray) -> None:
    with NpyWriter(path, array.shape, np.float32) as writer:
        writer.write(array)


def embed_shard(
    splits: DatasetSplits,
    embedder,
    folder: Path,
    i: int,
    n_shards: int,
    options: EmbedOptions | None = None,
) -> dict[str, int]:
    """Embed shard ``i``: its rows of every split (and, for shard 0, the class prompts) into pieces, as
    ``options`` say (the cache's image identity aside: pieces are keyed by the plan).

    Images that cannot be decoded come back as NaN rows (kept: the assembled image entry stays aligned
    with its ids); their texts are left out, as the run leaves them out. Returns rows embedded per split.
    """
    o = options or EmbedOptions()
    prompt, batch_size, num_workers, decode = o.prompt, o.batch_size, o.num_workers, o.image_decode
    done = {}
    for name, split in splits.splits.items():
        start, stop = shard_rows(len(split), n_shards, i)
        part = split.subset(np.arange(start, stop))
        img = embed_images(embedder, part.images, batch_size, num_workers, f"{name} images", decode)
        _write(_piece(folder, name, "image", i), img)
        kept = part.drop(finite_rows(img), UNDECODABLE_IMAGE)
        texts = kept.prompts(prompt)
        txt = embed_texts(embedder, texts, batch_size, f"{name} texts")
        _write(_piece(folder, name, "text", i), txt.reshape(len(texts), -1))
        done[name] = stop - start
    prompts = class_prompts(splits, prompt)
    if i == 0 and prompts is not None:
        _write(_piece(folder, CLASSES, "text", 0), embed_texts(embedder, prompts, batch_size))
    return done


def shards_done(folder: Path, n_shards: int) -> list[int]:
    """Shards of the plan whose job finished (``jobs/<i>/done``)."""
    return [i for i in range(n_shards) if (job_folder(folder, i) / DONE).is_file()]


def job_folder(folder: Path, i: int) -> Path:
    return folder / "jobs" / f"{i:05d}"


def assemble(
    splits: DatasetSplits,
    embedder,
    cache: EmbeddingCache,
    folder: Path,
    n_shards: int,
    dtype: str = "float32",
    options: EmbedOptions | None = None,
) -> int:
    """Write the cache entries of a fully embedded plan from its pieces (those already present are left
    alone); returns how many entries were written. Streams the pieces: memory is one piece."""
    options = options or EmbedOptions()
    prompt, decode = options.prompt, options.image_decode
    missing = sorted(set(range(n_shards)) - set(shards_done(folder, n_shards)))
    if missing:
        raise LemonError(
            f"{len(missing)} of {n_shards} shards are not done yet (first: {missing[0]}); run "
            "python -m lemon.embed again to embed them."
        )
    written = 0
    for name, split in splits.splits.items():
        if split.images is None:  # plan_folder refused such splits already
            raise LemonError(f"split '{name}' of dataset '{splits.name}' has no images to embed.")
        ids = [str(i) for i in split.images.ids]
        kind = image_kind(splits.name, decode)
        key = cache.key(embedder, kind, ids, split.images.fingerprint())
        written += _assemble_entry(
            cache,
            embedder,
            kind,
            ids,
            key,
            folder,
            name,
            "image",
            dtype,
            n_shards,
        )
        img = cache.load(embedder.id, key)
        if img is None:  # written just above: gone or damaged since (another job, the disk)
            raise LemonError(
                f"The {name} image embeddings assembled into {cache.root} cannot be read back; "
                "run python -m lemon.embed again."
            )
        kept: PairSplit = split.drop(finite_rows(img), UNDECODABLE_IMAGE)
        texts = kept.prompts(prompt)
        key = cache.key(embedder, "text", texts)
        written += _assemble_entry(
            cache, embedder, "text", texts, key, folder, name, "text", dtype, n_shards
        )
    prompts = class_prompts(splits, prompt)
    if prompts is not None:
        key = cache.key(embedder, "text", prompts)
        written += _assemble_entry(
            cache, embedder, "text", prompts, key, folder, CLASSES, "text", dtype, 1
        )
    return written


def _assemble_entry(
    cache: EmbeddingCache,
    embedder,
    kind: str,
    inputs: list[str],
    key: str,
    folder: Path,
    split: str,
    what: str,
    dtype: str,
    pieces: int,
) -> int:
    """One cache entry from the pieces of ``split``/``what`` (1 written, 0 when it existed)."""
    if cache.load(embedder.id, key) is not None:
        return 0
    paths = [_piece(folder, split, what, i) for i in range(pieces)]
    shapes = [open_rows(p).shape for p in paths]
    n, dims = sum(s[0] for s in shapes), {s[1] for s in shapes if s[0]}
    if n != len(inputs) or len(dims) > 1:
        raise LemonError(
            f"The pieces of {split} {what} embeddings in {folder} hold {n} rows for {len(inputs)} "
            "inputs; delete that folder and run python -m lemon.embed again."
        )

    def blocks() -> Iterator[np.ndarray]:
        for p in paths:
            yield open_rows(p)

    with cache.lock(embedder.id, key):
        if cache.load(embedder.id, key) is None:
            start = time.time()
            dim = dims.pop() if dims else 0
            cache.store(embedder, kind, inputs, key, blocks(), n, dim, dtype, time.time() - start)
            log.info("assembled %d %s %s embeddings from %d shards", n, split, what, len(paths))
            return 1
    return 0
