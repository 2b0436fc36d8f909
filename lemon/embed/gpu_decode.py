"""Images decoded and preprocessed on the GPU (``--image_decode gpu``): nvJPEG through torchvision.

At thousands of images a second the CPU's JPEG decoding, not the model, limits a GPU (LAION's clip-retrieval
reaches about 2,500 images/s per A100 for that reason). Here DataLoader workers only read the encoded bytes;
a batch is decoded on the GPU in one call (``torchvision.io.decode_jpeg(device="cuda")``), then resized
(shortest edge, bicubic with antialiasing), center-cropped and normalised there with the model's own
geometry (:func:`geometry`). Pixels differ from the PIL path by rounding (about one grey level), so the cache
keeps the two apart (``image_kind(..., decode="gpu")``). Files that are not JPEG (PNG, WebP) or that nvJPEG
rejects are decoded on the CPU instead; those that cannot be decoded at all come back as NaN rows, as in
:func:`lemon.embed.batching.embed_images`. On a CPU device the same code runs with CPU decoding (tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lemon.core.errors import LemonError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageGeometry:
    """A CLIP model's image preprocessing: resize the shortest edge, center-crop, normalise."""

    size: int
    crop: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"


def geometry(embedder) -> ImageGeometry:
    """The preprocessing geometry of a loaded embedder (open_clip or transformers CLIP)."""
    embedder.load()
    model = embedder.model
    processor = getattr(getattr(embedder, "_preprocess", None), "processor", None)
    if processor is not None:  # transformers CLIPImageProcessor
        size = processor.size.get("shortest_edge") if processor.do_resize else None
        crop = processor.crop_size
        interpolation = {2: "bilinear", 3: "bicubic"}.get(int(processor.resample))
        if size is None or not processor.do_center_crop or interpolation is None:
            raise LemonError(
                f"--image_decode gpu supports shortest-edge resize + center crop preprocessing; "
                f"{embedder.name}'s image processor does otherwise. Use --image_decode cpu."
            )
        return ImageGeometry(
            int(size),
            (int(crop["height"]), int(crop["width"])),
            tuple(processor.image_mean),
            tuple(processor.image_std),
            interpolation,
        )
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(model)
    if cfg.get("resize_mode", "shortest") != "shortest":
        raise LemonError(
            f"--image_decode gpu supports shortest-edge resize + center crop preprocessing; "
            f"{embedder.name} resizes by '{cfg['resize_mode']}'. Use --image_decode cpu."
        )
    size = cfg["size"]
    crop = (size, size) if isinstance(size, int) else tuple(size)
    return ImageGeometry(
        min(crop), crop, tuple(cfg["mean"]), tuple(cfg["std"]), cfg.get("interpolation", "bicubic")
    )


def encoded(source: Any, i: int) -> bytes:
    """The encoded bytes of image ``i`` of an ImageSource (files, tar members, in-memory blobs)."""
    if hasattr(source, "read_bytes"):
        return source.read_bytes(i)
    if hasattr(source, "relpaths"):
        return (Path(source.root) / source.relpaths[i]).read_bytes()
    if hasattr(source, "blobs"):
        return bytes(source.blobs[i])
    raise LemonError(
        f"--image_decode gpu needs encoded images (files, tar shards, bytes); {type(source).__name__} "
        "holds decoded pixels. Use --image_decode cpu."
    )


class EncodedImages:
    """torch-style dataset: item i = (uint8 tensor of image i's encoded bytes, readable)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        import torch

        try:
            data = encoded(self.source, i)
        except OSError:
            return torch.zeros(0, dtype=torch.uint8), False
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), len(data) > 0


def _collate(items):
    return [blob for blob, _ in items], [ok for _, ok in items]


def _turned(blob) -> bool:
    """Whether a JPEG's EXIF says to turn it for viewing (nvJPEG ignores that; PIL applies it)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob.numpy().tobytes())) as img:
            return img.getexif().get(0x0112, 1) in range(2, 9)
    except Exception:  # a damaged header: the decoders say so
        return False


def decode(blobs: list, ok: list[bool], device: str) -> tuple[list, list[bool]]:
    """RGB uint8 (3, H, W) tensors on ``device``; JPEGs in one batched call, others (and JPEGs the batch
    call rejects, or whose EXIF turns them) one by one on the CPU, as the PIL path decodes them. A blob
    that cannot be decoded gives an empty image and ok=False."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from lemon.data.images import decode_errors, open_rgb

    images: list = [None] * len(blobs)
    ok = list(ok)
    jpeg = [
        i
        for i, b in enumerate(blobs)
        if ok[i] and len(b) > 2 and b[0] == 0xFF and b[1] == 0xD8 and not _turned(b)
    ]
    if jpeg:
        try:
            out = decode_jpeg(
                [blobs[i] for i in jpeg],
                mode=ImageReadMode.RGB,
                device=device,
            )
            for i, img in zip(jpeg, out):
                images[i] = img
        except RuntimeError:
            log.debug("batched JPEG decoding failed; decoding this batch's JPEGs one by one")
    for i, blob in enumerate(blobs):
        if images[i] is not None or not ok[i]:
            continue
        try:  # other formats (16-bit PNG, transparency, ...) as the PIL path decodes them
            rgb = np.asarray(open_rgb(blob.numpy().tobytes()))
            images[i] = torch.from_numpy(rgb.copy()).permute(2, 0, 1).to(device)
        except decode_errors():
            ok[i] = False
    empty = torch.zeros((3, 1, 1), dtype=torch.uint8, device=device)
    return [img if img is not None else empty for img in images], ok


def preprocess(images: list, geo: ImageGeometry):
    """(n, 3, crop_h, crop_w) float batch: shortest edge to ``geo.size``, center crop, normalised."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    mode = (
        InterpolationMode.BICUBIC if geo.interpolation == "bicubic" else InterpolationMode.BILINEAR
    )
    # images differ in size: each is resized on its own (on the device), then the batch is stacked
    out = torch.stack(
        [
            F.center_crop(
                F.resize(img, geo.size, interpolation=mode, antialias=True), list(geo.crop)
            )
            for img in images
        ]
    )
    mean = torch.tensor(geo.mean, device=out.device).view(1, 3, 1, 1)
    std = torch.tensor(geo.std, device=out.device).view(1, 3, 1, 1)
    return (out.float() / 255.0 - mean) / std


def embed_images_gpu_decode(
    embedder, source: Any, batch_size: int = 128, num_workers: int = 2, desc: str = "images"
) -> np.ndarray:
    """(n, dim) float32 embeddings of every image of ``source``, decoded on ``embedder.device``.

    Rows of images that cannot be decoded are NaN (the caller drops and counts them)."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    geo = geometry(embedder)
    workers = num_workers if len(source) > batch_size else 0
    loader: DataLoader[Any] = DataLoader(
        EncodedImages(source),  # type: ignore[arg-type]  # map-style; torch types it Dataset
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers else None,
    )
    out, good = [], []
    for blobs, ok in tqdm(
        loader, desc=f"embed {desc} (decode on {embedder.device})", leave=False, disable=None
    ):
        images, ok = decode(blobs, ok, embedder.device)
        out.append(embedder.encode_images(preprocess(images, geo)))
        good.append(np.asarray(ok, dtype=bool))
    if not out:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    emb, decoded = np.concatenate(out), np.concatenate(good)
    if not decoded.all():
        emb[~decoded] = np.nan
        log.warning(
            "%s: %d of %d images could not be decoded", desc, int((~decoded).sum()), len(decoded)
        )
    return emb
