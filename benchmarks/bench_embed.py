"""Embedding throughput: the data pipeline alone, the model alone, and both together (images/s).

Usage:
    python benchmarks/bench_embed.py                                    # CPU, ViT-S-32 random init
    python benchmarks/bench_embed.py --device cuda --precision fp16 --model open_clip:ViT-B-32/random \
        --n 16384 --batch_size 512 --decode cpu gpu

The images are JPEG files (``--image_size`` px, random content) written once to a temporary folder and
read through :class:`lemon.data.base.FileImages`, so "data" covers decoding + the model's own
preprocessing in DataLoader workers. "model" encodes one preprocessed batch repeatedly (no loading);
"both" is the real path, :func:`lemon.embed.batching.embed_images`, once per ``--decode`` (cpu: PIL in the
workers; gpu: workers read bytes, nvJPEG decodes and the model's resize/crop run on the GPU). The goal:
both >= 90% of model alone on a GPU, i.e. loading is never the bottleneck. Texts: distinct captions
through ``embed_texts``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_some(folder: Path, start: int, stop: int, size: int, seed: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng([seed, start])
    names = []
    for i in range(start, stop):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        names.append(f"{i:06d}.jpg")
        img.save(folder / names[-1], quality=90)
    return names


def write_images(folder: Path, n: int, size: int, seed: int = 0) -> list[str]:
    """``n`` JPEGs of smooth random colour fields (compress like photos, unlike white noise), written by
    one process per core."""
    from concurrent.futures import ProcessPoolExecutor

    step = max(1, -(-n // (os.cpu_count() or 1)))
    with ProcessPoolExecutor() as pool:
        parts = pool.map(
            _write_some,
            *zip(*[(folder, s, min(n, s + step), size, seed) for s in range(0, n, step)]),
        )
    return [name for part in parts for name in part]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    """(stage, items, seconds) rows."""
    from lemon.data.base import FileImages
    from lemon.embed import build_embedder
    from lemon.embed.batching import embed_images, embed_texts, image_loader

    emb = build_embedder(args.model, device=args.device, precision=args.precision).load()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = FileImages(Path(tmp), write_images(Path(tmp), args.n, args.image_size))
        loader = image_loader(
            source, emb.preprocess, args.batch_size, args.num_workers, args.device
        )
        start = time.perf_counter()
        batches = [b for b in loader]  # data alone (workers decode + preprocess)
        rows.append(("data (decode+preprocess)", args.n, time.perf_counter() - start))

        batch = batches[0].to(args.device)
        emb.encode_images(batch)  # warm-up (cuDNN autotune, allocator)
        _sync(args.device)
        reps = max(1, args.n // len(batch))
        start = time.perf_counter()
        for _ in range(reps):
            emb.encode_images(batch)
        _sync(args.device)
        rows.append(("model (preprocessed batch)", reps * len(batch), time.perf_counter() - start))

        for decode in args.decode:
            if args.device.startswith("cuda"):  # warm-up: nvJPEG and allocator initialisation
                embed_images(emb, source, args.batch_size, args.num_workers, decode=decode)
            start = time.perf_counter()
            embed_images(emb, source, args.batch_size, args.num_workers, decode=decode)
            _sync(args.device)
            rows.append((f"both (decode={decode})", args.n, time.perf_counter() - start))
    texts = [f"a photo of object {i} in scene {i % 97}" for i in range(args.n)]
    start = time.perf_counter()
    embed_texts(emb, texts, args.batch_size)
    _sync(args.device)
    rows.append(("texts (embed_texts)", args.n, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="open_clip:ViT-S-32/random", help="any --clip_model value"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="auto, fp32, fp16 (CUDA) or bf16")
    parser.add_argument("--n", type=int, default=256, help="images (and texts) to embed")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--image_size", type=int, default=256, help="side of the JPEGs on disk")
    parser.add_argument(
        "--decode",
        nargs="+",
        default=["cpu"],
        choices=["cpu", "gpu"],
        help="where embed_images decodes (one 'both' row each; gpu needs --device cuda)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = bench(args)
    rate = {name: n / s for name, n, s in rows}
    print(
        f"model={args.model} device={args.device} precision={args.precision} n={args.n} "
        f"batch={args.batch_size} workers={args.num_workers} cpus={os.cpu_count()}"
    )
    print(f"{'stage':<28} {'items':>7} {'seconds':>9} {'items/s':>10}")
    for name, n, s in rows:
        print(f"{name:<28} {n:>7} {s:>9.2f} {n / s:>10.1f}")
    data, model = rate["data (decode+preprocess)"], rate["model (preprocessed batch)"]
    for decode in args.decode:
        both = rate[f"both (decode={decode})"]
        print(
            f"decode={decode}: both / model alone = {both / model:.2f}   both / data alone = "
            f"{both / data:.2f}   (target on GPU: both / model >= 0.90)"
        )
    if len(args.decode) > 1:
        fastest = max(args.decode, key=lambda d: rate[f"both (decode={d})"])
        print(f"faster here: --image_decode {fastest}")


if __name__ == "__main__":
    main()
