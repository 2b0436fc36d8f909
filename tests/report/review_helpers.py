"""Helpers of the report tests: small runs, images for them, and the review data the page loads."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from PIL import Image

N = 160  # train 160, val 20, test 20
#: how the tests start Debian's chromium (never a downloaded browser)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def synthetic_run(out: Path, *flags: str) -> Path:
    """A finished run_lemon run of the synthetic classification data (200 pairs, 40% noise)."""
    import run_lemon

    argv = ["--dataset", "synthetic", "--n_synthetic", str(N), "--lemon_fix"]
    assert run_lemon.main([*argv, "--output_dir", str(out), *flags]) == 0
    return out


def copy_run(run_dir: Path, dest: Path) -> Path:
    return Path(shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("report_files")))


def with_images(run_dir: Path, dest: Path, make_ref) -> tuple[Path, pd.DataFrame]:
    """A copy of the run whose scores.csv names an image per row (``make_ref(split, idx)``)."""
    run = copy_run(run_dir, dest)
    scores = pd.read_csv(run / "scores.csv")
    scores.insert(2, "image", [make_ref(s, i) for s, i in zip(scores["split"], scores["idx"])])
    scores.to_csv(run / "scores.csv", index=False)
    return run, scores


def colour(split: str, idx: int) -> tuple[int, int, int]:
    return (idx * 37 % 200 + 20, ("train", "val", "test").index(split) * 90 + 20, 128)


def image_files(run: Path, scores: pd.DataFrame, data: Path, skip=()) -> None:
    """One PNG per row under ``data/imgs`` in the row's colour, and the run's data root set to ``data``."""
    (data / "imgs").mkdir(parents=True)
    for s, i in zip(scores["split"], scores["idx"]):
        if (s, i) not in skip:
            Image.new("RGB", (64, 48), colour(s, i)).save(data / "imgs" / f"{s}_{i}.png")
    set_args(run, data_dir=str(data))


def set_args(run: Path, **values) -> None:
    args = json.loads((run / "args.json").read_text())
    (run / "args.json").write_text(json.dumps({**args, **values}))


def _script_json(text: str, pattern: str):
    match = re.fullmatch(pattern, text.strip(), flags=re.S)
    assert match, text[:200]
    return json.loads(match.group(1))


def review_index(run: Path) -> dict:
    """report_files/index.js: per view, the scores.csv positions, scores (and classes) it lists."""
    return _script_json(
        (run / "report_files" / "index.js").read_text(), r"window\.LEMON_INDEX=(.*);"
    )


def review_cards(run: Path, view: str) -> list[dict]:
    """Every card of a view, in order, from its report_files data files."""
    cards = []
    files = sorted((run / "report_files" / view).glob("*.js"))
    for n, path in enumerate(files):
        cards += _script_json(path.read_text(), rf'LEMON_CHUNK\("{view}",{n},(.*)\);')
    return cards


def chromium() -> str:
    """Debian's chromium: skipped with the reason when absent here, a failure in CI."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is missing in CI: .ci/run installs it (apt-get install -y chromium)"
            )
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(
                "playwright is missing in CI: it is in the dev extra (pip install -e '.[dev]')"
            )
        pytest.skip("playwright not installed (pip install -e '.[dev]')")
    return path


def tiny_images_dataset():
    """A captioning dataset of 8x8 in-memory images in :func:`colour` (ids ``tiny/<split>/<i>``), sized
    like :func:`synthetic_run`'s splits: what the report reloads for thumbnails, like the demo or CIFAR."""
    from lemon.data.base import ArrayImages, Dataset, DatasetSplits, PairSplit

    sizes = {"train": N, "val": 20, "test": 20}

    class TinyImages(Dataset):
        name: ClassVar[str] = "tiny_images"
        task: ClassVar[str] = "captioning"
        noise_types: ClassVar[tuple[str, ...]] = ("random",)

        def check_exists(self, root):
            return None

        def load(self, root, data_seed):
            splits = {}
            for s, n in sizes.items():
                pixels = np.zeros((n, 8, 8, 3), dtype=np.uint8)
                pixels[:] = np.array([colour(s, i) for i in range(n)], dtype=np.uint8)[
                    :, None, None
                ]
                caps = np.array([f"{s} {i}" for i in range(n)], dtype=object)
                images = ArrayImages(pixels, [f"tiny/{s}/{i}" for i in range(n)])
                splits[s] = PairSplit(s, "captioning", images, caps, caps)
            return DatasetSplits("tiny_images", "captioning", splits)

    return TinyImages
