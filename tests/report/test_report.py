"""The report of a run: the page (summary, metrics, figures), the review queue it loads (every flagged pair,
the audit sample), the cards' pairs, neighbours, images and suggestions, flagged.csv and the CLI. What the
page does in a browser is tested in test_review_browser.py."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from review_helpers import (
    N,
    colour,
    copy_run,
    finished_run,
    image_files,
    page_meta,
    review_cards,
    review_index,
    set_args,
    synthetic_run,
    tiny_images_dataset,
    with_images,
)

from lemon.data.synthetic import CIFAR10_CLASSES, make_synthetic_embeddings
from lemon.report import build as report
from lemon.report.review import CHUNK, audit_sample


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


def _decode(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def _meta(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="lemon-meta">(.*?)</script>', page).group(
        1
    )
    return json.loads(raw)


def _flagged_positions(run: Path) -> list[int]:
    """scores.csv positions of flagged.csv's rows, in its order (matched on split and idx)."""
    scores = pd.read_csv(run / "scores.csv").reset_index(names="pos")
    flagged = pd.read_csv(run / "flagged.csv")
    return flagged.merge(scores[["split", "idx", "pos"]], on=["split", "idx"])["pos"].tolist()


@pytest.fixture
def run_dir(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory)


@pytest.fixture
def no_plots(monkeypatch):
    """Leave the figures out (matplotlib takes seconds a page) where a test looks at the pairs only."""
    monkeypatch.setattr(report.html, "plots_png", lambda scores, hparams: [])


def test_pipeline_flag_writes_the_report(run_dir):
    for name in ("report.html", "flagged.csv", "done", "report_files/index.js"):
        assert (run_dir / name).is_file(), name


def test_page_holds_the_summary_not_the_pairs(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    path = report.write_report(run)
    assert path == run / "report.html"
    page = path.read_text()
    tags = Tags(page)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    hparams = json.loads((run / "hparams.json").read_text())
    n_flagged = len(pd.read_csv(run / "flagged.csv"))
    text = re.sub(r"\s+", " ", " ".join(tags.text))
    assert f"{n_flagged} of 200 pairs are flagged by {hparams['flag_rule_text']}" in text
    assert "Estimated noise rate, without labels" in text
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['test/AUROC']:.3f}" in text
    plots = [a for t, a in tags.tags if t == "img" and a.get("class") == "plot"]
    assert [p["alt"] for p in plots] == [f"train ({N} pairs)", "val (20 pairs)", "test (20 pairs)"]
    assert all(_decode(p["src"]).size[0] > 1000 for p in plots)  # ROC + PR + histogram panels
    assert "no thumbnails" in text  # an embedding-only run
    scripts = [a.get("src") for t, a in tags.tags if t == "script"]
    assert "report_files/index.js" in scripts  # the pairs are in report_files/, loaded by the page
    meta = page_meta(run)
    assert meta["task"] == "classification" and meta["chunk"] == CHUNK
    assert meta["run_key"] == report.run_key(run / "scores.csv")
    for key in ("j", "w", "r", "u", "x", "c", "n", "p"):
        assert f"<kbd>{key}</kbd>" in page  # the shortcuts are on the page


def test_flagged_view_lists_every_flagged_pair_most_suspicious_first(run_dir, tmp_path, no_plots):
    run = copy_run(run_dir, tmp_path / "run")
    report.write_report(run)
    scores = pd.read_csv(run / "scores.csv")
    threshold = json.loads((run / "hparams.json").read_text())["thresholds"]["optimal"]
    expected = scores[scores["score"] >= threshold].sort_values("score", ascending=False)
    index = review_index(run)["flagged"]
    assert index["pos"] == expected.index.tolist() == _flagged_positions(run)
    assert index["score"] == pytest.approx(expected["score"].tolist(), abs=1e-6)
    cards = review_cards(run, "flagged")
    assert len(list((run / "report_files" / "flagged").glob("*.js"))) == math.ceil(
        len(cards) / CHUNK
    )
    assert [c["p"] for c in cards] == index["pos"] and [c["k"] for c in cards] == list(
        range(1, len(cards) + 1)
    )
    for card in cards:
        row = scores.loc[card["p"]]
        assert (card["s"], card["i"], card["r"]) == (row["split"], row["idx"], row["row"])
        assert card["t"] == CIFAR10_CLASSES[row["observed_label"]]
        assert card["v"] == row["suggested_label"] != card["t"]  # prefilled with the suggested fix
        assert card["fl"] and card["sc"] == pytest.approx(row["score"], abs=1e-6)
        assert card["terms"]["d_mm"] == pytest.approx(row["d_mm"], abs=1e-6)
        assert card["terms"]["s_n"] == pytest.approx(5.0 * row["s_n"], abs=1e-5)  # beta 5 (fixed)
    classes = review_index(run)["flagged"]["cls"]
    names = page_meta(run)["classes"]
    assert [names[c] for c in classes] == [c["t"] for c in cards]


def test_audit_sample_is_seeded_and_drawn_from_all_scored_pairs(run_dir, tmp_path, no_plots):
    run = copy_run(run_dir, tmp_path / "run")
    scores = pd.read_csv(run / "scores.csv")
    report.write_report(run, audit_size=60)
    first = review_index(run)["audit"]["pos"]
    assert len(first) == len(set(first)) == 60
    assert scores.loc[first, "score"].is_monotonic_decreasing  # listed most suspicious first
    picked = scores.loc[first]
    assert set(picked["split"]) == {"train", "val", "test"}
    assert picked["flagged"].any() and not picked["flagged"].all()  # flagged or not
    report.write_report(run, audit_size=60)
    assert review_index(run)["audit"]["pos"] == first  # the run's seed: the same sample again
    set_args(run, seed=1)
    report.write_report(run, audit_size=60)
    assert set(review_index(run)["audit"]["pos"]) != set(first)
    flagged_cards = review_cards(run, "flagged")
    audit = set(review_index(run)["audit"]["pos"])
    assert all(c["a"] for c in review_cards(run, "audit"))
    assert [c["a"] for c in flagged_cards] == [c["p"] in audit for c in flagged_cards]
    report.write_report(run, audit_size=0)
    assert review_index(run)["audit"]["pos"] == []
    assert list((run / "report_files" / "audit").glob("*.js")) == []  # the old files are gone


def test_audit_sample_is_uniform():
    """Every pair is equally likely to be audited: inclusion counts over 4000 seeds are binomial."""
    n, size, seeds = 50, 10, 4000
    counts = np.zeros(n)
    for seed in range(seeds):
        drawn = audit_sample(n, size, seed)
        assert len(np.unique(drawn)) == size and drawn.min() >= 0 and drawn.max() < n
        counts[drawn] += 1
    p = size / n
    sd = math.sqrt(seeds * p * (1 - p))
    assert np.abs(counts - seeds * p).max() < 4.5 * sd
    assert audit_sample(5, 100, 0).tolist() == [0, 1, 2, 3, 4]  # all of them when fewer
    small, large = audit_sample(1000, 100, 3), audit_sample(1000, 300, 3)
    assert set(small) <= set(large)  # a larger sample of the run holds the pairs audited before


def test_neighbours_and_ground_truth_match_a_brute_force_search(run_dir, tmp_path, no_plots):
    run = copy_run(run_dir, tmp_path / "run")
    report.write_report(run, n_neighbours=5)
    arrays = make_synthetic_embeddings(N, 0.4)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    ref = unit(arrays["train_img"].astype(np.float64))
    cards = review_cards(run, "flagged")
    for card in cards[:8]:
        split, idx = card["s"], card["i"]
        sim = ref @ unit(arrays[f"{split}_img"][idx : idx + 1].astype(np.float64)).T[:, 0]
        if split == "train":
            sim[idx] = -np.inf  # a reference pair is never its own neighbour
        expected = [CIFAR10_CLASSES[c] for c in arrays["train_noisy_label"][np.argsort(-sim)[:5]]]
        assert [text for text, _ in card["n"]] == expected
        assert "m" not in card  # class labels: the text look-alikes all carry the same label
        assert card["t"] == CIFAR10_CLASSES[arrays[f"{split}_noisy_label"][idx]]
        assert card["e"] == int(arrays[f"{split}_is_mislabel"][idx])
        assert card["c"] == CIFAR10_CLASSES[arrays[f"{split}_label"][idx]]


def test_suggestion_prefills_the_correction(run_dir, tmp_path, no_plots):
    """A unit test of the page's data: scores.csv extended here with the suggestion columns another stage
    writes (suggested_label, suggestion_confidence); the corrected field starts from the suggestion."""
    run = copy_run(run_dir, tmp_path / "run")
    scores = pd.read_csv(run / "scores.csv")
    # the test's own stand-in for the suggestion: the class after the observed one, as a class name
    scores["suggested_label"] = [CIFAR10_CLASSES[(c + 1) % 10] for c in scores["observed_label"]]
    scores["suggestion_confidence"] = np.linspace(0.5, 0.9, len(scores))
    scores.to_csv(run / "scores.csv", index=False)
    report.write_report(run)
    page = (run / "report.html").read_text()
    assert "the suggested fix" in page
    for card in review_cards(run, "flagged") + review_cards(run, "audit"):
        row = scores.loc[card["p"]]
        assert card["v"] == card["g"] == CIFAR10_CLASSES[(row["observed_label"] + 1) % 10]
        assert card["gs"] == pytest.approx(row["suggestion_confidence"], abs=1e-6)
        assert card["t"] == CIFAR10_CLASSES[row["observed_label"]]
        assert "suggestion_confidence" not in card["x"]  # not shown as a score component


def test_thumbnails_link_files_under_the_data_root(run_dir, tmp_path, no_plots):
    data = tmp_path / "data"
    run, scores = with_images(run_dir, tmp_path / "run", lambda s, i: f"imgs/{s}_{i}.png")
    flagged_pos = _flagged_positions(run)
    missing = scores.loc[flagged_pos[0]]  # the most suspicious pair's file is missing
    image_files(run, scores, data, skip={(missing["split"], missing["idx"])})
    report.write_report(run, n_neighbours=3, audit_size=0)
    page = (run / "report.html").read_text()
    assert f"1 of {len(flagged_pos)} images of the pairs to review could not be found" in page
    cards = review_cards(run, "flagged")
    assert (
        cards[0]["u"] is None and cards[0]["f"] == f"imgs/{missing['split']}_{missing['idx']}.png"
    )
    for card in cards[1:]:
        assert card["u"] == (data / "imgs" / f"{card['s']}_{card['i']}.png").resolve().as_uri()
        assert card["f"] == f"imgs/{card['s']}_{card['i']}.png"
        assert len(card["n"]) == 3 and all(u.startswith("file:///") for _, u in card["n"])
    assert not (run / "report_files" / "img").exists()  # browsers show PNG files: nothing copied


def test_thumbnails_from_the_reloaded_dataset(run_dir, tmp_path, no_plots, monkeypatch):
    """In-memory images (CIFAR, demo) are written beside the page, matched by image id."""
    from lemon.data import DATASETS

    monkeypatch.setitem(DATASETS._entries, "tiny_images", tiny_images_dataset())
    run, scores = with_images(
        run_dir, tmp_path / "run", lambda s, i: f"tiny/{s}/{i}" if i != 3 else "other/id"
    )
    set_args(run, dataset="tiny_images", n_synthetic=N)
    report.write_report(run, audit_size=200)
    checked = 0
    for card in review_cards(run, "audit"):  # the audit sample is every pair here
        if card["i"] == 3:  # the id does not match the dataset's: no wrong picture
            assert card["u"] is None
            continue
        assert card["u"].startswith("report_files/img/")
        img = Image.open(run / card["u"]).convert("RGB")
        assert img.size == (8, 8)  # kept as it is: the page enlarges it with visible pixels
        assert np.abs(np.asarray(img)[4, 4].astype(int) - colour(card["s"], card["i"])).max() == 0
        checked += 1
    assert checked == len(scores) - 3


def test_run_without_labels(tmp_path):
    run = synthetic_run(tmp_path / "real", "--real_dataset")
    page = report.write_report(run).read_text()
    assert "pairs are flagged by the label-free rule" in re.sub(r"\s+", " ", page)
    assert "Estimated noise rate, without labels" in page
    assert all("e" not in c for c in review_cards(run, "flagged") + review_cards(run, "audit"))
    plots = [a for t, a in Tags(page).tags if t == "img" and a.get("class") == "plot"]
    assert len(plots) == 3 and all(_decode(p["src"]).size[0] < 600 for p in plots)  # histograms


def test_stored_decisions_are_keyed_by_the_scores(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path / "run")
    key = report.run_key(run / "scores.csv")
    assert key == report.run_key(run_dir / "scores.csv")  # the same pairs: the same decisions
    scores = pd.read_csv(run / "scores.csv")
    scores.loc[0, "score"] += 1
    scores.to_csv(run / "scores.csv", index=False)
    assert report.run_key(run / "scores.csv") != key


def test_cli_and_bad_inputs(run_dir, tmp_path, no_plots, capsys):
    run = copy_run(run_dir, tmp_path / "run")
    assert report.main([str(run), "--audit_size", "7"]) == 0
    assert f"report: {run / 'report.html'}" in capsys.readouterr().out
    assert len(review_index(run)["audit"]["pos"]) == 7
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    assert report.main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert report.main([str(tmp_path)]) == 2
    assert "has no scores.csv" in capsys.readouterr().err
    assert report.main([str(run), "--audit_size", "-1"]) == 2
    assert "--audit_size must be >= 0, got 5 and -1" in capsys.readouterr().err
    bad = copy_run(run_dir, tmp_path / "bad")
    pd.read_csv(bad / "scores.csv").drop(columns="score").to_csv(bad / "scores.csv", index=False)
    assert report.main([str(bad)]) == 2
    assert "lacks column(s) score" in capsys.readouterr().err


def test_flagged_csv_uses_the_val_optimal_threshold(run_dir):
    flagged = pd.read_csv(run_dir / "flagged.csv")
    threshold = json.loads((run_dir / "hparams.json").read_text())["thresholds"]["optimal"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(flagged) == sum(metrics[f"{s}/n_flagged_optimal"] for s in ("train", "val", "test"))
    assert (flagged["score"] >= threshold).all() and flagged["score"].is_monotonic_decreasing
    assert flagged["rank"].tolist() == list(range(1, len(flagged) + 1))


@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated zip", b"not an npz at all"])
def test_corrupt_neighbours_file_leaves_the_panels_out(
    run_dir, tmp_path, no_plots, caplog, content
):
    run = copy_run(run_dir, tmp_path / "run")
    data = (run / "neighbours.npz").read_bytes()
    (run / "neighbours.npz").write_bytes(data[: len(data) // 2] if content is None else content)
    with caplog.at_level("WARNING", logger="lemon.report.inputs"):
        assert report.main([str(run)]) == 0  # no traceback, exit 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"{run / 'neighbours.npz'} is not a readable .npz (")
    assert "the neighbour panels are left out of the report" in warnings[0]
    assert "Neighbours are not available" in (run / "report.html").read_text()
    assert all("n" not in c for c in review_cards(run, "flagged"))
