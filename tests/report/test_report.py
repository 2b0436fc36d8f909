"""The HTML report of suspected errors: structure, the right pairs and neighbours, images, flagged CSV."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lemon.data.synthetic import CIFAR10_CLASSES, make_synthetic_embeddings
from lemon.report import build as report

N = 160  # train 160, val 20, test 20


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of the document."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _run(out: Path, *flags: str) -> Path:
    import run_lemon

    argv = [
        "--dataset",
        "synthetic",
        "--n_synthetic",
        str(N),
        "--lemon_fix",
        "--output_dir",
        str(out),
        *flags,
    ]
    assert run_lemon.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("report") / "run", "--report")


def _rows(page: str) -> list[str]:
    return page.split('<tr class="suspect">')[1:]


def _decode(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_pipeline_flag_writes_the_report(run_dir):
    assert (run_dir / "report.html").is_file() and (run_dir / "flagged.csv").is_file()
    assert (run_dir / "done").is_file()


def test_report_structure_and_order(run_dir):
    path = report.write_report(run_dir, top_n=20, n_neighbours=5)
    assert path == run_dir / "report.html"
    page = path.read_text()
    tags = Tags(page)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    srcs = [a["src"] for t, a in tags.tags if "src" in a]
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # self-contained
    assert not any(t in ("link", "script") for t, _ in tags.tags)
    scores = pd.read_csv(run_dir / "scores.csv")
    top = scores.sort_values("score", ascending=False, kind="stable").head(20)
    rows = _rows(page)
    assert len(rows) == 20
    shown = [float(re.search(r'<div class="score">([\d.]+)</div>', r).group(1)) for r in rows]
    assert shown == pytest.approx(top["score"].round(3).tolist(), abs=1e-3)
    first = top.iloc[0]
    assert f'#1<br><span class="sub">{first["split"]} {first["idx"]}</span>' in rows[0]
    plots = [a for t, a in tags.tags if t == "img" and a.get("class") == "plot"]
    assert [p["alt"] for p in plots] == [f"train ({N} pairs)", "val (20 pairs)", "test (20 pairs)"]
    assert all(_decode(p["src"]).size[0] > 1000 for p in plots)  # ROC + PR + histogram panels
    text = " ".join(tags.text)
    assert "no thumbnails" in text and "<th>image</th>" not in page  # embedding-only run


def test_neighbours_and_ground_truth_match_a_brute_force_search(run_dir):
    page = report.write_report(run_dir, top_n=10, n_neighbours=5).read_text()
    arrays = make_synthetic_embeddings(N, 0.4)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    ref = unit(arrays["train_img"].astype(np.float64))
    for row in _rows(page)[:5]:
        split, idx = re.search(r'<span class="sub">(\w+) (\d+)</span>', row).groups()
        idx = int(idx)
        sim = ref @ unit(arrays[f"{split}_img"][idx : idx + 1].astype(np.float64)).T[:, 0]
        if split == "train":
            sim[idx] = -np.inf  # a reference pair is never its own neighbour
        expected = [CIFAR10_CLASSES[c] for c in arrays["train_noisy_label"][np.argsort(-sim)[:5]]]
        chips = re.findall(r'<span class="(?:differs|agrees)">([^<]*)</span>', row)
        assert chips == expected
        observed = CIFAR10_CLASSES[arrays[f"{split}_noisy_label"][idx]]
        assert f'<div class="obs">{observed}</div>' in row
        for chip in re.findall(r'<span class="differs">([^<]*)</span>', row):
            assert chip != observed
        clean = CIFAR10_CLASSES[arrays[f"{split}_label"][idx]]
        if arrays[f"{split}_is_mislabel"][idx]:
            assert f"known error &middot; clean: {clean}" in row
        else:
            assert "clean in the ground truth" in row


def test_flagged_csv_uses_the_val_optimal_threshold(run_dir):
    report.write_report(run_dir)
    flagged = pd.read_csv(run_dir / "flagged.csv")
    threshold = json.loads((run_dir / "hparams.json").read_text())["thresholds"]["optimal"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(flagged) == sum(metrics[f"{s}/n_flagged_optimal"] for s in ("train", "val", "test"))
    assert (flagged["score"] >= threshold).all() and flagged["score"].is_monotonic_decreasing
    assert flagged["rank"].tolist() == list(range(1, len(flagged) + 1))


def test_run_without_labels(tmp_path):
    run = _run(tmp_path / "real", "--real_dataset")
    page = report.write_report(run).read_text()
    assert "pairs are flagged by the label-free rule" in page and "known error" not in page
    assert "Estimated noise rate, without labels" in page
    plots = [a for t, a in Tags(page).tags if t == "img" and a.get("class") == "plot"]
    assert len(plots) == 3 and all(_decode(p["src"]).size[0] < 600 for p in plots)  # histogram only


def _with_images(run_dir: Path, tmp_path: Path, make_ref) -> tuple[Path, pd.DataFrame]:
    """A copy of the run whose scores.csv names an image per row (``make_ref(split, idx)``)."""
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    scores = pd.read_csv(run / "scores.csv")
    scores.insert(2, "image", [make_ref(s, i) for s, i in zip(scores["split"], scores["idx"])])
    scores.to_csv(run / "scores.csv", index=False)
    return run, scores


def _colour(split: str, idx: int) -> tuple[int, int, int]:
    return (idx * 37 % 200 + 20, ("train", "val", "test").index(split) * 90 + 20, 128)


def test_thumbnails_from_files_under_the_data_root(run_dir, tmp_path):
    data = tmp_path / "data"
    run, scores = _with_images(run_dir, tmp_path, lambda s, i: f"imgs/{s}_{i}.png")
    (data / "imgs").mkdir(parents=True)
    for s, i in zip(scores["split"], scores["idx"]):
        if not (s == "test" and i == 0):  # one file missing
            Image.new("RGB", (64, 48), _colour(s, i)).save(data / "imgs" / f"{s}_{i}.png")
    args = json.loads((run / "args.json").read_text())
    (run / "args.json").write_text(json.dumps({**args, "data_dir": str(data)}))
    page = report.write_report(run, top_n=len(scores), n_neighbours=3).read_text()
    assert "<th>image</th>" in page and "1 of 200 images shown could not be found" in page
    for row in _rows(page)[:10]:
        split, idx = re.search(r'<span class="sub">(\w+) (\d+)</span>', row).groups()
        thumb = re.search(r'<img class="thumb" src="([^"]+)"', row)
        if (split, idx) == ("test", "0"):
            assert thumb is None and "image not found" in row
            continue
        img = _decode(thumb.group(1)).convert("RGB")
        assert img.size == (112, 84)
        pixel = np.asarray(img)[40, 56].astype(int)
        assert np.abs(pixel - _colour(split, int(idx))).max() <= 12
        assert (
            row.count('<div class="nbi"><img src="data:image/jpeg') == 6
        )  # 3 + 3 neighbour thumbnails


def test_thumbnails_from_the_reloaded_dataset(run_dir, tmp_path, monkeypatch):
    """In-memory images (CIFAR, demo) come from the dataset itself, matched by image id."""
    from lemon.data import DATASETS
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
                pixels[:] = np.array([_colour(s, i) for i in range(n)], dtype=np.uint8)[
                    :, None, None, :
                ]
                caps = np.array([f"{s} {i}" for i in range(n)], dtype=object)
                images = ArrayImages(pixels, [f"tiny/{s}/{i}" for i in range(n)])
                splits[s] = PairSplit(s, "captioning", images, caps, caps)
            return DatasetSplits("tiny_images", "captioning", splits)

    monkeypatch.setitem(DATASETS._entries, "tiny_images", TinyImages)
    run, scores = _with_images(
        run_dir, tmp_path, lambda s, i: f"tiny/{s}/{i}" if i != 3 else "other/id"
    )
    args = json.loads((run / "args.json").read_text())
    (run / "args.json").write_text(json.dumps({**args, "dataset": "tiny_images", "n_synthetic": N}))
    page = report.write_report(run, top_n=len(scores)).read_text()
    checked = 0
    for row in _rows(page):
        split, idx = re.search(r'<span class="sub">(\w+) (\d+)</span>', row).groups()
        thumb = re.search(r'<img class="thumb" src="([^"]+)"', row)
        if idx == "3":  # the id does not match the dataset's: no wrong picture
            assert thumb is None
            continue
        pixel = np.asarray(_decode(thumb.group(1)).convert("RGB"))[50, 50].astype(int)
        assert np.abs(pixel - _colour(split, int(idx))).max() <= 12
        checked += 1
    assert checked == len(scores) - 3


def test_cli_and_bad_inputs(run_dir, tmp_path, capsys):
    assert report.main([str(run_dir), "--top", "5"]) == 0
    assert f"report: {run_dir / 'report.html'}" in capsys.readouterr().out
    assert len(_rows((run_dir / "report.html").read_text())) == 5
    assert report.main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert report.main([str(tmp_path)]) == 2
    assert "has no scores.csv" in capsys.readouterr().err
    assert report.main([str(run_dir), "--top", "0"]) == 2
    assert "top_n must be >= 1" in capsys.readouterr().err
    bad = Path(shutil.copytree(run_dir, tmp_path / "bad"))
    pd.read_csv(bad / "scores.csv").drop(columns="score").to_csv(bad / "scores.csv", index=False)
    assert report.main([str(bad)]) == 2
    assert "lacks column(s) score" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated zip", b"not an npz at all"])
def test_corrupt_neighbours_file_leaves_the_panels_out(run_dir, tmp_path, caplog, content):
    run = Path(shutil.copytree(run_dir, tmp_path / "run"))
    data = (run / "neighbours.npz").read_bytes()
    (run / "neighbours.npz").write_bytes(
        data[: len(data) // 2] if content is None else content
    )  # None: cut
    with caplog.at_level("WARNING", logger="lemon.report.build"):
        assert report.main([str(run), "--top", "5"]) == 0  # no traceback, exit 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"{run / 'neighbours.npz'} is not a readable .npz (")
    assert "the neighbour panels are left out of the report" in warnings[0]
    page = (run / "report.html").read_text()
    assert len(_rows(page)) == 5 and "Neighbours are not available" in page


@pytest.mark.slow
def test_renders_in_headless_chromium(run_dir, tmp_path):
    """What a person sees: the page renders in a real browser, text and thumbnails included."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is missing in CI: .ci/run installs it (apt-get install -y chromium)"
            )
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    magenta = (
        255,
        0,
        255,
    )  # a colour nothing else on the page uses: visible only if the images render
    data = tmp_path / "data"
    run, scores = _with_images(run_dir, tmp_path, lambda s, i: f"imgs/{s}_{i}.png")
    (data / "imgs").mkdir(parents=True)
    for s, i in zip(scores["split"], scores["idx"]):
        Image.new("RGB", (64, 48), magenta).save(data / "imgs" / f"{s}_{i}.png")
    args = json.loads((run / "args.json").read_text())
    (run / "args.json").write_text(json.dumps({**args, "data_dir": str(data)}))
    page = report.write_report(run, top_n=10)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    grey = rgb.mean(axis=2)
    assert grey.shape == (2000, 1280)
    assert grey.std() > 20 and (grey < 100).mean() > 0.01  # text and figures, not a blank page
    thumbs = np.abs(rgb - magenta).max(axis=2) < 40
    assert (
        thumbs.sum() > 3 * 112 * 84
    )  # several pair thumbnails (112x84) and neighbour images drawn
    assert (
        thumbs[:, :640].any() and thumbs[:, 640:].any()
    )  # the pair column and the neighbour panels
