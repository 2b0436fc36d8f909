"""Helpers of the report tests: small runs, images for them, and the review data the page loads."""

from __future__ import annotations

import io
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

from lemon.data.synthetic import CIFAR10_CLASSES

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


_FINISHED: dict[str, Path] = {}


def finished_run(tmp_path_factory) -> Path:
    """A finished run written with --report, made once a session (tests copy it before changing it).

    The test modules' ``run_dir`` fixtures return it (a tests/report/conftest.py would shadow the
    top-level conftest module that other tests import by name)."""
    if "run" not in _FINISHED:
        _FINISHED["run"] = synthetic_run(tmp_path_factory.mktemp("report") / "run", "--report")
    return _FINISHED["run"]


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


def page_meta(run: Path) -> dict:
    """The JSON report.html hands its script (run key, task, classes, ...)."""
    page = (run / "report.html").read_text()
    found = re.search(r'<script type="application/json" id="lemon-meta">(.*?)</script>', page)
    return json.loads(found.group(1))


def review_cards(run: Path, view: str) -> list[dict]:
    """Every card of a view, in order, from its report_files data files (image URLs in full)."""
    cards = []
    files = sorted((run / "report_files" / view).glob("*.js"))
    for n, path in enumerate(files):
        cards += _script_json(path.read_text(), rf'LEMON_CHUNK\("{view}",{n},(.*)\);')
    base = page_meta(run)["url_base"]

    def full(url):
        return base + url[1:] if url and url.startswith("~") else url

    for card in cards:
        card["u"] = full(card["u"])
        for side in ("n", "m"):
            for item in card.get(side, []):
                item[1] = full(item[1])
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


def large_run(folder: Path, n_flagged: int, n_clean: int, k: int = 10, seed: int = 0) -> Path:
    """A run folder of ``n_flagged + n_clean`` classification pairs, the first ``n_flagged`` by score
    flagged, each naming its own image file (copies of one small PNG under ``folder/data``), with
    neighbours.npz: what the report reads of a large run, without running one (scores are random)."""
    rng = np.random.default_rng(seed)
    n = n_flagged + n_clean
    folder.mkdir(parents=True)
    data = folder / "data" / "imgs"
    data.mkdir(parents=True)
    split = np.where(
        np.arange(n) % 10 < 8, "train", np.where(np.arange(n) % 10 == 8, "val", "test")
    )
    idx = pd.Series(split).groupby(split).cumcount().to_numpy()
    score = np.sort(rng.uniform(0.5, 2.0, n))[::-1].copy()
    threshold = score[n_flagged - 1]
    observed = rng.integers(0, 10, n)
    names = np.array(CIFAR10_CLASSES)
    scores = pd.DataFrame(
        {
            "split": split,
            "idx": idx,
            "row": np.arange(n),
            "image": [f"imgs/{i}.png" for i in range(n)],
            "clean_label": observed,
            "observed_label": observed,
            "text": np.char.add("A photo of a ", names[observed]),
            "is_mislabel": 0,
            "score": score,
            "d_mm": score / 2,
            "s_n": score / 4,
            "s_m": score / 4,
            "flagged": score >= threshold,
        }
    )
    run = folder / "run"
    run.mkdir()
    scores.to_csv(run / "scores.csv", index=False)
    (run / "args.json").write_text(
        json.dumps(
            {
                "dataset": "synthetic",
                "data_dir": str(folder / "data"),
                "seed": seed,
                "noise_level": 0.0,
                "resolved": {"prompt": "A photo of a "},
            }
        )
    )
    hparams = {
        "scorer": "lemon",
        "beta": 1.0,
        "gamma": 1.0,
        "thresholds": {"optimal": float(threshold)},
        "flag_rule": "optimal",
        "flag_rule_text": "the threshold that maximised F1 on the labelled val split",
    }
    (run / "hparams.json").write_text(json.dumps(hparams))
    n_train = int((split == "train").sum())
    arrays = {"reference_index": np.arange(n_train)}
    for s in ("train", "val", "test"):
        rows = int((split == s).sum())
        for side in ("n", "m"):
            arrays[f"{s}_idx_{side}"] = rng.integers(0, n_train, (rows, k))
    np.savez_compressed(run / "neighbours.npz", **arrays)
    png = io.BytesIO()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(png, format="PNG")
    for i in range(n):
        (data / f"{i}.png").write_bytes(png.getvalue())
    return run
