"""``--dataset synthetic``: CLIP-like embeddings with planted label errors, generated on the fly.

Ten classes (CIFAR-10 names). Both modalities share unit class directions; each modality adds its own
offset (a crude modality gap). An image embeds its true class (40% of images are ambiguous mixtures with a
second class) plus isotropic noise; a text embeds the prompt of its *observed* label plus a little noise.
Exactly round(noise_level * n) labels per split are flipped to a different class. Vectors are stored with
random norms, like raw CLIP outputs. With the default noise level the arrays are bit-identical to the
benchmark references (``../shared/reference/N2000``): same seeds, same draws, same order.
Used by the benchmark, the tests and as a no-download smoke dataset.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from lemon.data.base import Dataset
from lemon.data.registry import DATASETS
from lemon.features import Features

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


def _split(n: int, rng: np.random.Generator, noise_level: float, geometry) -> dict[str, np.ndarray]:
    class_dirs, image_offset, prompts = geometry
    label = rng.integers(0, N_CLASSES, n)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, int(round(noise_level * n)), replace=False)] = True
    shift = rng.integers(1, N_CLASSES, n)
    observed = np.where(flipped, (label + shift) % N_CLASSES, label)
    ambiguous = rng.random(n) < P_AMBIGUOUS
    second = (label + rng.integers(1, N_CLASSES, n)) % N_CLASSES
    weight = np.where(ambiguous, rng.uniform(0.4, 0.8, n), 1.0)[:, None]
    latent = weight * class_dirs[label] + (1 - weight) * class_dirs[second]
    img = _unit(latent + image_offset + IMAGE_NOISE * rng.standard_normal((n, DIM)) / np.sqrt(DIM))
    txt = _unit(prompts[observed] + TEXT_NOISE * rng.standard_normal((n, DIM)) / np.sqrt(DIM))
    img = img * rng.uniform(5, 15, (n, 1))
    txt = txt * rng.uniform(5, 15, (n, 1))
    return {
        "img": img.astype(np.float32),
        "txt": txt.astype(np.float32),
        "label": label.astype(np.int64),
        "noisy_label": observed.astype(np.int64),
        "is_mislabel": flipped.astype(np.int64),
    }


def make_synthetic_embeddings(
    n: int, noise_level: float = 0.4, data_seed: int = 0
) -> dict[str, np.ndarray]:
    """Arrays in the ``--embeddings`` npz layout: ``{split}_{img,txt,label,noisy_label,is_mislabel}`` for
    train (n), val and test (n // 8 each), plus ``label_prompt_txt`` (10, 512). Seeded by ``n`` and
    ``data_seed`` (seed 0 draws exactly the reference arrays; another seed, another sample of the same
    geometry, so the seeds of a sweep are real replicates)."""
    geometry = _geometry()
    rng = np.random.default_rng(1000 + n if data_seed == 0 else [1000 + n, data_seed])
    arrays: dict[str, np.ndarray] = {}
    for split, size in (("train", n), ("val", n // 8), ("test", n // 8)):
        for key, value in _split(size, rng, noise_level, geometry).items():
            arrays[f"{split}_{key}"] = value
    arrays["label_prompt_txt"] = (geometry[2] * 10).astype(np.float32)
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
        arrays = make_synthetic_embeddings(o.n_synthetic, o.noise_level, o.data_seed)
        return features_from_arrays(
            arrays,
            prompt=o.prompt,
            class_names=CIFAR10_CLASSES,
            source=f"synthetic(n={o.n_synthetic})",
        )
