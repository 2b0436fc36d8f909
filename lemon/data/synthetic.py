"""``--dataset synthetic``: CLIP-like embeddings with planted label errors, generated on the fly.

Ten classes (CIFAR-10 names). Both modalities share unit class directions; each modality adds its own
offset (a crude modality gap). An image embeds its true class (40% of images are ambiguous mixtures with a
second class) plus isotropic noise; a text embeds the prompt of its *observed* label plus a little noise.
Exactly round(noise_level * n) labels per split are flipped to a different class. Vectors are stored with
random norms, like raw CLIP outputs. With the default noise level the arrays are bit-identical to the
benchmark references (``../shared/reference/N2000``): same seeds, same draws, same order.
Rows are drawn in blocks of 65,536, so a million pairs never need more than a block of temporaries; above
200,000 pairs the arrays go to ``.npy`` files in the cache (generated once) and are read memory-mapped.
Used by the benchmarks, the tests and as a no-download smoke dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from lemon.data.base import Dataset
from lemon.data.features import Features, normalize_rows
from lemon.data.registry import DATASETS

log = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
N_CLASSES, DIM = 10, 512
IMAGE_NOISE, TEXT_NOISE, P_AMBIGUOUS = 4.0, 0.2, 0.4
#: rows drawn per block (bounds the float64 temporaries); splits up to this size draw as the reference did
GEN_BLOCK = 65536
#: above this many train pairs the arrays are generated into the cache and memory-mapped, not held in memory
IN_MEMORY_MAX = 200_000
#: version of the stored layout (part of the store's folder name)
STORE_VERSION = 1


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class directions, the image-side offset and the class-prompt embeddings (same for every N)."""
    rng = np.random.default_rng(0)
    class_dirs = _unit(rng.standard_normal((N_CLASSES, DIM)))
    image_offset = _unit(rng.standard_normal((1, DIM)))
    text_offset = _unit(rng.standard_normal((1, DIM)))
    prompts = _unit(class_dirs + text_offset + 0.5 * _unit(rng.standard_normal((N_CLASSES, DIM))))
    return class_dirs, image_offset, prompts


def _split_blocks(
    n: int, rng: np.random.Generator, noise_level: float, geometry, block: int = GEN_BLOCK
) -> tuple[dict[str, np.ndarray], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """Per-row labels of one split, and an iterator over its (img, txt) float32 row blocks.

    The labels are drawn first, then each block's image noise, text noise and random norms, in that order;
    a split of at most ``block`` rows is thus drawn exactly as the reference generator drew it. The
    iterator must be consumed before the next split is drawn from the same ``rng``.
    """
    class_dirs, image_offset, prompts = geometry
    label = rng.integers(0, N_CLASSES, n)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, int(round(noise_level * n)), replace=False)] = True
    shift = rng.integers(1, N_CLASSES, n)
    observed = np.where(flipped, (label + shift) % N_CLASSES, label)
    ambiguous = rng.random(n) < P_AMBIGUOUS
    second = (label + rng.integers(1, N_CLASSES, n)) % N_CLASSES
    weight = np.where(ambiguous, rng.uniform(0.4, 0.8, n), 1.0)[:, None]
    labels = {
        "label": label.astype(np.int64),
        "noisy_label": observed.astype(np.int64),
        "is_mislabel": flipped.astype(np.int64),
    }

    def rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # in place, in the reference's order of operations (same bits, a third of the temporaries)
        for s in range(0, n, block):
            e = min(n, s + block)
            img = class_dirs[label[s:e]]
            img *= weight[s:e]
            other = class_dirs[second[s:e]]
            other *= 1 - weight[s:e]
            img += other
            img += image_offset
            noise = rng.standard_normal((e - s, DIM))
            noise *= IMAGE_NOISE
            noise /= np.sqrt(DIM)
            img += noise
            img /= np.linalg.norm(img, axis=1, keepdims=True)
            txt = rng.standard_normal((e - s, DIM), out=noise)
            txt *= TEXT_NOISE
            txt /= np.sqrt(DIM)
            txt += prompts[observed[s:e]]
            txt /= np.linalg.norm(txt, axis=1, keepdims=True)
            img *= rng.uniform(5, 15, (e - s, 1))
            txt *= rng.uniform(5, 15, (e - s, 1))
            yield img.astype(np.float32), txt.astype(np.float32)

    return labels, rows()


def _sizes(n: int) -> tuple[tuple[str, int], ...]:
    return (("train", n), ("val", n // 8), ("test", n // 8))


def _rng(n: int, data_seed: int) -> np.random.Generator:
    return np.random.default_rng(1000 + n if data_seed == 0 else [1000 + n, data_seed])


def make_synthetic_embeddings(
    n: int, noise_level: float = 0.4, data_seed: int = 0
) -> dict[str, np.ndarray]:
    """Arrays in the ``--embeddings`` npz layout: ``{split}_{img,txt,label,noisy_label,is_mislabel}`` for
    train (n), val and test (n // 8 each), plus ``label_prompt_txt`` (10, 512). Seeded by ``n`` and
    ``data_seed`` (seed 0 draws exactly the reference arrays; another seed, another sample of the same
    geometry, so the seeds of a sweep are real replicates)."""
    geometry = _geometry()
    rng = _rng(n, data_seed)
    arrays: dict[str, np.ndarray] = {}
    for split, size in _sizes(n):
        labels, rows = _split_blocks(size, rng, noise_level, geometry)
        img = np.empty((size, DIM), dtype=np.float32)
        txt = np.empty((size, DIM), dtype=np.float32)
        start = 0
        for a, b in rows:
            img[start : start + len(a)], txt[start : start + len(a)] = a, b
            start += len(a)
        arrays.update({f"{split}_img": img, f"{split}_txt": txt})
        arrays.update({f"{split}_{key}": value for key, value in labels.items()})
    arrays["label_prompt_txt"] = (geometry[2] * 10).astype(np.float32)
    return arrays


def synthetic_store(
    root: Path, n: int, noise_level: float = 0.4, data_seed: int = 0
) -> dict[str, np.ndarray]:
    """The arrays of :func:`make_synthetic_embeddings`, generated block by block into ``.npy`` files under
    ``root`` (once; later calls and concurrent jobs read them) and returned memory-mapped.

    Embeddings are stored unit-normalised (float32, normalised exactly as the features would normalise the
    in-memory arrays), so they are used from the files without any copy. Peak memory is one block.
    """
    from lemon.core.io import DONE, atomic_save_npy, atomic_write_text, file_lock
    from lemon.core.npy import NpyWriter, open_rows

    folder = (
        Path(root) / "synthetic" / f"n{n}-noise{noise_level:g}-seed{data_seed}-v{STORE_VERSION}"
    )
    with file_lock(folder.parent / ".locks" / f"{folder.name}.lock"):
        if not (folder / DONE).is_file():
            log.info("generating %d synthetic pairs (+2 x %d) into %s", n, n // 8, folder)
            geometry = _geometry()
            rng = _rng(n, data_seed)
            for split, size in _sizes(n):
                labels, rows = _split_blocks(size, rng, noise_level, geometry)
                with (
                    NpyWriter(folder / f"{split}_img.npy", (size, DIM), np.float32) as img,
                    NpyWriter(folder / f"{split}_txt.npy", (size, DIM), np.float32) as txt,
                ):
                    for a, b in rows:
                        img.write(normalize_rows(a, f"{split} image embeddings"))
                        txt.write(normalize_rows(b, f"{split} text embeddings"))
                for key, value in labels.items():
                    atomic_save_npy(folder / f"{split}_{key}.npy", value)
            atomic_save_npy(folder / "label_prompt_txt.npy", (geometry[2] * 10).astype(np.float32))
            atomic_write_text(folder / DONE, f"n={n}\n")
    arrays = {"label_prompt_txt": np.load(folder / "label_prompt_txt.npy")}
    for split, _ in _sizes(n):
        for key in ("img", "txt"):
            arrays[f"{split}_{key}"] = open_rows(folder / f"{split}_{key}.npy")
        for key in ("label", "noisy_label", "is_mislabel"):
            arrays[f"{split}_{key}"] = np.load(folder / f"{split}_{key}.npy")
    return arrays


@DATASETS.register("synthetic")
class SyntheticEmbeddings(Dataset):
    """Generated CLIP-like embeddings (no images, no download); size from ``--n_synthetic``."""

    task: ClassVar[str] = "classification"
    noise_types: ClassVar[tuple[str, ...]] = ("symmetric",)
    precomputed: ClassVar[bool] = True

    def load_features(self) -> Features:
        from lemon.data.embeddings import features_from_arrays

        o = self.options
        if o.n_synthetic > IN_MEMORY_MAX:
            from lemon.core.paths import cache_root

            arrays = synthetic_store(
                cache_root(o.cache_dir), o.n_synthetic, o.noise_level, o.data_seed
            )
        else:
            arrays = make_synthetic_embeddings(o.n_synthetic, o.noise_level, o.data_seed)
        return features_from_arrays(
            arrays,
            prompt=o.prompt,
            class_names=CIFAR10_CLASSES,
            source=f"synthetic(n={o.n_synthetic})",
        )
