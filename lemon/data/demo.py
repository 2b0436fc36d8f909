"""``--dataset demo``: a small image–caption dataset generated offline, for the README's first command.

Each image is one coloured shape (circle, square, triangle, diamond, cross or ring) of a given size on the
left or right of a textured background; its caption describes shape, colour, size and side with one of a
few templates ("a large red circle on the left", "left side: small blue ring", ...). Images are rendered
with vectorised numpy masks from a fixed seed, so every run and every machine sees the same pixels; the
image ids carry a version tag that changes whenever the rendering does (the embedding cache keys on them).

Its default embedder is ``demo_clip``: a tiny CLIP trained from scratch on the *noisy* train captions (40%
``random`` noise, data_seed 0) on first use and cached under the cache folder (see
:mod:`lemon.embed.checkpoint`), like the paper's from-scratch MIMIC-CXR models. Per-sample categories
(shape, colour) make the ``cat`` noise available too.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from lemon.data.base import ArrayImages, Dataset, DatasetSplits, PairSplit
from lemon.data.registry import DATASETS

VERSION = "demo-v1"
IMAGE_SIZE = 32
SPLIT_SIZES = {"train": 2000, "val": 300, "test": 1000}
RENDER_SEED = 20250501  # fixed: the pixels never depend on --data_seed (only the noise does)

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
    "white": (240, 240, 240),
    "cyan": (40, 200, 210),
}
SIZES = {"small": (4.5, 6.0), "large": (8.5, 10.5)}  # radius range in pixels
SIDES = ("left", "right")
STYLES = (
    "filled",
    "outline",
    "faint",
)  # drawn, never described: a per-image bias of image-text similarity
TEMPLATES = (
    "a {size} {colour} {shape} on the {side}",
    "{colour} {shape}, {side}, {size}",
    "there is a {colour} {shape} on the {side}, it is {size}",
    "in this small synthetic picture we can see one {size} {colour} {shape} placed on the {side} side "
    "of the frame, over a grey textured background",
)


def _shape_masks(shape: np.ndarray, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(n, H, W) bool masks of each sample's shape; dx, dy are pixel offsets from the centre."""
    dist = np.sqrt(dx**2 + dy**2)
    ax, ay = np.abs(dx), np.abs(dy)
    masks = np.stack(
        [
            dist <= r,  # circle
            np.maximum(ax, ay) <= 0.8 * r,  # square
            (dy <= 0.8 * r) & (ax <= (dy + r) * 0.55),  # triangle (apex up)
            ax + ay <= r,  # diamond
            ((ax <= 0.3 * r) & (ay <= r)) | ((ay <= 0.3 * r) & (ax <= r)),  # cross
            (dist <= r) & (dist >= 0.55 * r),  # ring
        ]
    )  # (n_shapes, n, H, W)
    return masks[shape, np.arange(len(shape))]


def render(n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` images (n, 32, 32, 3) uint8 and their attributes (index arrays into the tables above)."""
    attrs = {
        "shape": rng.integers(0, len(SHAPES), n),
        "colour": rng.integers(0, len(COLOURS), n),
        "size": rng.integers(0, len(SIZES), n),
        "side": rng.integers(0, len(SIDES), n),
        "template": rng.integers(0, len(TEMPLATES), n),
        "style": rng.integers(0, len(STYLES), n),
    }
    lo, hi = np.asarray(list(SIZES.values())).T
    r = rng.uniform(lo[attrs["size"]], hi[attrs["size"]])[:, None, None]
    half = IMAGE_SIZE / 2
    cx = np.where(attrs["side"] == 0, half * 0.5, half * 1.5) + rng.uniform(-2, 2, n)
    cy = half + rng.uniform(-half + 11, half - 11, n)
    grid = np.arange(IMAGE_SIZE) + 0.5
    dx = grid[None, None, :] - cx[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    mask = _shape_masks(attrs["shape"], dx, dy, r)
    inner = _shape_masks(attrs["shape"], dx, dy, np.maximum(r - 2.0, 1.0))
    style = attrs["style"][:, None, None]
    mask = np.where(style == 1, mask & ~inner, mask)  # outline: only the shape's border
    base = np.asarray(list(COLOURS.values()), dtype=np.float64)[attrs["colour"]]
    colour = np.clip(base + rng.normal(0, 18, (n, 3)), 0, 255)
    background = rng.uniform(20, 110, (n, 1, 1, 1)) + rng.normal(
        0, 14, (n, IMAGE_SIZE, IMAGE_SIZE, 1)
    )
    alpha = np.where(attrs["style"] == 2, 0.45, 1.0)[
        :, None, None, None
    ]  # faint: blended into the background
    pixels = np.where(
        mask[..., None], alpha * colour[:, None, None, :] + (1 - alpha) * background, background
    )
    pixels = (
        pixels
        + rng.normal(0, 8, pixels.shape)
        * np.where(attrs["style"] == 2, 2.0, 1.0)[:, None, None, None]
    )
    return np.clip(pixels, 0, 255).astype(np.uint8), attrs


def captions(attrs: dict[str, np.ndarray]) -> np.ndarray:
    """Caption of each sample from its attributes and template (object array of str)."""
    names = (list(SIZES), list(COLOURS), list(SHAPES), list(SIDES))
    fields = zip(
        *(
            np.asarray(table)[attrs[key]]
            for key, table in zip(("size", "colour", "shape", "side"), names)
        )
    )
    return np.asarray(
        [
            TEMPLATES[t].format(size=a, colour=b, shape=c, side=d)
            for t, (a, b, c, d) in zip(attrs["template"], fields)
        ],
        dtype=object,
    )


def render_split(split: str, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pixels and attributes of one split, from a render seed fixed per split."""
    return render(n, np.random.default_rng([RENDER_SEED, list(SPLIT_SIZES).index(split)]))


def make_split(split: str, n: int) -> PairSplit:
    """One split (clean captions), rendered from a seed fixed per split."""
    pixels, attrs = render_split(split, n)
    text = captions(attrs)
    ids = [f"{VERSION}/{split}/{i:05d}" for i in range(n)]
    cats = list(zip(np.asarray(SHAPES)[attrs["shape"]], np.asarray(list(COLOURS))[attrs["colour"]]))
    return PairSplit(
        split, "captioning", ArrayImages(pixels, ids), text, text.copy(), categories=cats
    )


@DATASETS.register("demo")
class Demo(Dataset):
    """Rendered coloured shapes with describing captions (generated in memory, no files, no download)."""

    task: ClassVar[str] = "captioning"
    noise_types: ClassVar[tuple[str, ...]] = ("random", "cat")
    default_embedder: ClassVar[str | None] = "demo_clip"
    default_knn_k: ClassVar[int | None] = (
        30  # the paper's preset k; at the original's k=5 LEMoN only ties d_mm here
    )

    def source(self, root: Path) -> str:
        return f"images generated in memory ({VERSION}; nothing read from disk)"

    def check_exists(self, root: Path) -> None:
        """Nothing to check: the data is generated."""

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        """Train/val/test of fixed size; ``data_seed`` only affects the noise injected later."""
        splits = {s: make_split(s, n) for s, n in SPLIT_SIZES.items()}
        return DatasetSplits(self.name, "captioning", splits)
