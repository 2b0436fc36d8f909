"""The GPU code paths, run on the CPU: images decoded by torchvision and preprocessed as tensors
(``--image_decode gpu``) give the PIL path's pixels and embeddings; undecodable images become NaN rows.
The half-precision kNN search is covered in test_neighbors.py; tests marked ``gpu`` repeat both on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_data import truncated_jpeg_bytes
from PIL import Image
from tiny_clip import tiny_clip_checkpoint

from lemon.core.errors import LemonError
from lemon.data.base import FileImages
from lemon.embed import build_embedder
from lemon.embed.batching import embed_images
from lemon.embed.gpu_decode import decode, embed_images_gpu_decode, encoded, geometry, preprocess
from lemon.embed.stage import image_kind


def _smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth photo-like image (resampling filters agree closely on it, unlike on white noise)."""
    x = np.cumsum(np.cumsum(rng.random((h, w, 3)), 0), 1)
    return (255 * x / x.max()).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six JPEGs of different sizes, a PNG (decoded on the CPU by either path) and a truncated JPEG."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    names = []
    for i in range(6):
        Image.fromarray(_smooth_image(rng, 40 + 5 * i, 60 - 3 * i)).save(d / f"{i}.jpg", quality=90)
        names.append(f"{i}.jpg")
    Image.fromarray(_smooth_image(rng, 50, 50)).save(d / "p.png")
    (d / "cut.jpg").write_bytes(truncated_jpeg_bytes(rng))
    return FileImages(d, [*names, "p.png", "cut.jpg"])


@pytest.fixture(scope="module", params=["open_clip", "transformers"])
def embedder(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return build_embedder(str(tiny_clip_checkpoint(folder, request.param)))


def test_geometry_is_the_models_own(embedder):
    geo = geometry(embedder)
    assert geo.size == 32 and geo.crop == (32, 32) and geo.interpolation == "bicubic"
    assert geo.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_tensor_preprocessing_matches_the_pil_transform(embedder, images):
    """Decoded by torchvision and resized/cropped/normalised as tensors, the pixels are the model's own
    transform's up to resampling rounding."""
    good = list(range(7))
    blobs = [torch.frombuffer(bytearray(encoded(images, i)), dtype=torch.uint8) for i in good]
    decoded, ok = decode(blobs, [True] * 7, "cpu")
    assert all(ok)
    pixels = preprocess(decoded, geometry(embedder))
    expected = torch.stack([embedder.preprocess(images[i]) for i in good])
    assert pixels.shape == expected.shape
    assert (pixels - expected).abs().mean() < 1e-3 and (pixels - expected).abs().max() < 0.05


def test_decoded_on_the_device_embeds_like_pil_and_marks_undecodable_rows(embedder, images):
    pil = embed_images(embedder, images, batch_size=3, num_workers=0)
    gpu = embed_images_gpu_decode(embedder, images, batch_size=3, num_workers=0)
    assert np.isnan(pil[7]).all() and np.isnan(gpu[7]).all()  # the truncated JPEG, either way
    a, b = pil[:7], gpu[:7]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999


def test_decoded_pixels_never_share_cache_entries_with_pil_ones():
    assert image_kind("cc3m") == "image/cc3m"
    assert image_kind("cc3m", "gpu") != image_kind("cc3m")


def test_gpu_decoding_needs_encoded_images(embedder):
    from lemon.data.base import ArrayImages

    pixels = ArrayImages(np.zeros((2, 8, 8, 3), np.uint8), ["a", "b"])
    with pytest.raises(LemonError, match="--image_decode gpu needs encoded images"):
        embed_images_gpu_decode(embedder, pixels, batch_size=2, num_workers=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_nvjpeg_and_half_precision_search(images, tmp_path):
    from lemon.neighbors import KnnOptions, build_searcher, knn

    emb = build_embedder(str(tiny_clip_checkpoint(tmp_path, "open_clip")), device="cuda")
    pil = embed_images(emb, images, batch_size=3, num_workers=0)
    gpu = embed_images_gpu_decode(emb, images, batch_size=3, num_workers=0)
    a, b = pil[:7], gpu[:7]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99
    x = np.random.default_rng(0).normal(size=(5000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim, _ = build_searcher(x, "torch_fp16", KnnOptions("torch_fp16", "cuda")).search(
        x, 10, np.arange(5000)
    )
    exact_sim, _ = knn(x, x, 10, exclude=np.arange(5000))
    np.testing.assert_allclose(sim, exact_sim, atol=1e-5)


def test_gpu_path_decodes_other_formats_as_the_pil_path(tmp_path):
    """A 16-bit greyscale PNG and a transparent PNG come out of the --image_decode gpu decoder with the
    pixels the PIL path gives (scaled, composited on white), not clipped or with their hidden colour."""
    from lemon.data.images import open_rgb

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise to view
    Image.fromarray(rgba[..., :3]).save(tmp_path / "r.jpg", quality=95, exif=exif)
    source = FileImages(tmp_path, ["g16.png", "t.png", "r.jpg"])
    blobs = [torch.frombuffer(bytearray(encoded(source, i)), dtype=torch.uint8) for i in range(3)]
    out, ok = decode(blobs, [True] * 3, "cpu")
    assert ok == [True] * 3
    assert out[2].shape == (3, 7, 9)  # turned: 9 x 7 stored, 7 x 9 shown
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), np.repeat(grey[..., None], 3, 2))
    np.testing.assert_array_equal(
        out[1].permute(1, 2, 0).numpy(), np.asarray(open_rgb(tmp_path / "t.png"))
    )
