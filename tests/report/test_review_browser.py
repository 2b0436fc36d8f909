"""The review in a real browser: headless Chromium (Debian's, driven by playwright) opens report.html from
file://, a person's clicks, corrections, keys, pages, filters, a reload and "Download decisions" are played,
and decisions.csv is checked against what was done. Skipped with the reason where chromium or playwright
is missing; a failure in CI (CI=true), where .ci/run installs both."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from review_helpers import (
    CHROMIUM_ARGS,
    N,
    chromium,
    finished_run,
    image_files,
    large_run,
    review_index,
    set_args,
    tiny_images_dataset,
    with_images,
)

from lemon.data.synthetic import CIFAR10_CLASSES
from lemon.report import build as report

COLUMNS = ["row", "image", "decision", "corrected", "audit", "reviewed_at", "split"]


@pytest.fixture
def run_dir(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by playwright (the package's own driver; no browser is downloaded)."""
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(browser, path):
    """A fresh page on report.html, its first page of cards rendered; page errors are collected."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(path.as_uri())
    page.wait_for_selector('#cards[data-page="flagged:0"]')
    return page, errors


def _after(page, action) -> None:
    """Do ``action`` and wait until the page has drawn its cards again."""
    before = int(page.get_attribute("#cards", "data-renders") or 0)
    action()
    page.wait_for_function(
        f"() => Number(document.getElementById('cards').dataset.renders) > {before}"
    )


def _positions(page) -> list[int]:
    return [
        int(p)
        for p in page.locator("#cards .card").evaluate_all("ns => ns.map(n => n.dataset.pos)")
    ]


def _card(page, pos: int):
    return page.locator(f'.card[data-pos="{pos}"]')


def _decision(page, pos: int) -> str:
    return _card(page, pos).get_attribute("data-decision")


def _download(page) -> pd.DataFrame:
    with page.expect_download() as info:
        page.click("#download")
    assert info.value.suggested_filename == "decisions.csv"
    return pd.read_csv(info.value.path(), dtype=str, keep_default_na=False)


def _expected(
    scores: pd.DataFrame, done: dict[int, tuple[str, str]], audit: set[int]
) -> pd.DataFrame:
    """decisions.csv as it should read: one row per decided pair (scores.csv order)."""
    rows = []
    for pos in sorted(done):
        decision, corrected = done[pos]
        row = scores.loc[pos]
        column = "suggested_text" if "suggested_text" in scores else "suggested_label"
        if decision == "wrong" and not corrected and column in scores and pd.notna(row[column]):
            corrected = str(row[column])  # the field was prefilled with the suggested fix
        image = row["image"] if "image" in scores else ""
        rows.append(
            [str(row["row"]), image, decision, corrected, str(int(pos in audit)), row["split"]]
        )
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "reviewed_at"])


def _check_times(found: pd.DataFrame, start: datetime) -> None:
    for stamp in found["reviewed_at"]:
        assert stamp.endswith("Z")  # ISO 8601, UTC
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert start.replace(microsecond=0) <= when <= datetime.now(timezone.utc)


def test_review_clicks_keys_pages_filters_reload_and_download(browser, run_dir, tmp_path):
    run, scores = with_images(run_dir, tmp_path / "run", lambda s, i: f"imgs/{s}_{i}.png")
    image_files(run, scores, tmp_path / "data")
    path = report.write_report(run, n_neighbours=3)
    index = review_index(run)
    flagged, audit = index["flagged"]["pos"], index["audit"]["pos"]
    assert len(flagged) > 30  # two pages at 25 a page
    name = {p: CIFAR10_CLASSES[c] for p, c in enumerate(scores["observed_label"])}
    start = datetime.now(timezone.utc)
    page, errors = _open(browser, path)

    # the first page: the 25 most suspicious flagged pairs, each named by the user's row and file
    assert _positions(page) == flagged[:25]
    top = scores.loc[flagged[0]]
    text = _card(page, flagged[0]).inner_text()
    assert f"row {top['row']}" in text and f"imgs/{top['split']}_{top['idx']}.png" in text
    assert "Images most like this one are labelled" in page.inner_text("#cards")
    assert "Pairs whose text reads like" not in page.inner_text(
        "#cards"
    )  # dropped for class labels
    page.wait_for_function(  # the thumbnail is drawn from the file
        "() => { const i = document.querySelector('.card img.thumb');"
        " return i && i.complete && i.naturalWidth === 64; }"
    )

    # buttons, and a correction typed into the field (it marks the pair wrong)
    done: dict[int, tuple[str, str]] = {}
    _card(page, flagged[0]).locator('button[data-d="wrong"]').click()
    done[flagged[0]] = ("wrong", "")  # not edited: the field holds the suggested fix
    _card(page, flagged[1]).locator('button[data-d="right"]').click()
    done[flagged[1]] = ("right", "")
    _card(page, flagged[2]).locator('button[data-d="unsure"]').click()
    done[flagged[2]] = ("unsure", "")
    other = next(c for c in CIFAR10_CLASSES if c != name[flagged[3]])
    _card(page, flagged[3]).locator(".corr").fill(other)
    done[flagged[3]] = ("wrong", other)
    assert [_decision(page, p) for p in flagged[:4]] == ["wrong", "right", "unsure", "wrong"]
    _card(page, flagged[1]).locator('button[data-d="right"]').click()  # a second click clears it
    assert _decision(page, flagged[1]) == ""
    del done[flagged[1]]

    # keys: w / r / u decide and move on, c edits the correction (Enter keeps it), k / x go back and clear
    _card(page, flagged[4]).locator(".obs").click()
    page.keyboard.press("w")
    page.keyboard.press("r")
    page.keyboard.press("c")
    fix = next(c for c in CIFAR10_CLASSES if c not in (name[flagged[6]], other))
    page.keyboard.type(fix)
    page.keyboard.press("Enter")
    page.keyboard.press("u")
    page.keyboard.press("k")
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("u")
    done.update(
        {
            flagged[4]: ("wrong", ""),
            flagged[5]: ("right", ""),
            flagged[6]: ("wrong", fix),
            flagged[8]: ("unsure", ""),
        }
    )
    assert [_decision(page, p) for p in flagged[4:9]] == ["wrong", "right", "wrong", "", "unsure"]
    assert "focus" in _card(page, flagged[9]).get_attribute("class")

    # next page by key: pairs 26-50, decided there too; back with the button
    _after(page, lambda: page.keyboard.press("n"))
    assert page.get_attribute("#cards", "data-page") == "flagged:1"
    assert _positions(page) == flagged[25:50]
    page.keyboard.press("w")
    done[flagged[25]] = ("wrong", "")
    _after(page, lambda: page.click("#prev"))
    assert _positions(page) == flagged[:25] and _decision(page, flagged[6]) == "wrong"

    # filter by class, by score, by decision
    cls = name[flagged[0]]
    _after(page, lambda: page.select_option("#f-class", label=cls))
    same = [p for p in flagged if name[p] == cls]
    assert _positions(page) == same[:25]
    assert set(page.locator("#cards .obs").all_inner_texts()) == {cls}
    _after(page, lambda: page.select_option("#f-class", value=""))
    low = index["flagged"]["score"][10]
    _after(page, lambda: page.locator("#f-min").fill(str(low)) or page.press("#f-min", "Enter"))
    assert _positions(page) == flagged[:11]
    _after(page, lambda: page.locator("#f-min").fill("") or page.press("#f-min", "Enter"))
    _after(page, lambda: page.select_option("#f-decision", value="wrong"))
    assert _positions(page) == [p for p in flagged if done.get(p, ("",))[0] == "wrong"]
    _after(page, lambda: page.select_option("#f-decision", value=""))

    # the audit sample: its own list, every card marked; one decided
    _after(page, lambda: page.click('.tabs button[data-view="audit"]'))
    assert _positions(page) == audit[:25]
    assert page.locator("#cards .badge.audit").count() == 25
    pick = next(p for p in audit if p not in done)
    _card(page, pick).locator('button[data-d="wrong"]').click()
    done[pick] = ("wrong", "")
    _after(page, lambda: page.keyboard.press("f"))
    assert page.get_attribute("#cards", "data-page") == "flagged:0"

    # a reload keeps every decision
    page.reload()
    page.wait_for_selector('#cards[data-page="flagged:0"]')
    for pos, (decision, _) in done.items():
        if pos in flagged[:25]:
            assert _decision(page, pos) == decision
            pressed = _card(page, pos).locator('button[aria-pressed="true"]').inner_text()
            assert pressed == decision
    assert _card(page, flagged[3]).locator(".corr").input_value() == other
    in_flagged = sum(p in flagged for p in done)
    in_audit = sum(p in audit for p in done)
    assert page.inner_text("#progress") == (
        f"{in_flagged} of {len(flagged)} flagged reviewed · {in_audit} of {len(audit)} audit reviewed"
    )

    # the download: exactly what was decided, in scores.csv order, audit pairs marked
    found = _download(page)
    assert list(found.columns) == COLUMNS
    expected = _expected(scores, done, set(audit))
    pd.testing.assert_frame_equal(found.drop(columns="reviewed_at"), expected)
    _check_times(found, start)

    # "forget decisions" (confirmed) empties this run's storage
    page.once("dialog", lambda dialog: dialog.accept())
    _after(page, lambda: page.click("#forget"))
    page.reload()
    page.wait_for_selector('#cards[data-page="flagged:0"]')
    assert page.locator('#cards .card[data-decision="wrong"]').count() == 0
    assert _download(page).empty
    assert errors == []


def test_captions_are_prefilled_with_the_suggestion_and_quoted_in_the_file(
    browser, run_dir, tmp_path
):
    """A unit test of the page: the run's scores.csv is extended here with the suggestion columns another
    stage writes for captions (suggested_text, suggestion_similarity), and its texts are turned into
    captions with commas, quotes and accents, as users' captions have."""
    run, scores = with_images(run_dir, tmp_path / "run", lambda s, i: f"imgs/{s}_{i}.png")
    caption = [f'a "{c}", seen in café nº {i}' for i, c in enumerate(scores["observed_label"])]
    scores["observed_label"] = scores["text"] = caption
    scores["clean_label"] = [f"clean {c}" for c in scores["clean_label"]]
    scores["suggested_text"] = [f"suggested, {c}" for c in caption]  # the test's own suggestion
    scores["suggestion_similarity"] = np.linspace(0.2, 0.3, len(scores))
    scores.loc[scores.index % 2 == 1, ["suggested_text", "suggestion_similarity"]] = np.nan
    scores.to_csv(run / "scores.csv", index=False)
    image_files(run, scores, tmp_path / "data")
    path = report.write_report(run, n_neighbours=2, audit_size=0)
    flagged = review_index(run)["flagged"]["pos"]
    with_suggestion = [p for p in flagged if p % 2 == 0]
    without = [p for p in flagged[:25] if p % 2 == 1]
    assert len(with_suggestion) >= 2 and without
    start = datetime.now(timezone.utc)
    page, errors = _open(browser, path)

    for pos in flagged[:25]:  # the field starts from the suggestion, else from the observed caption
        field = _card(page, pos).locator("textarea.corr").input_value()
        assert field == (scores.loc[pos, "suggested_text"] if pos % 2 == 0 else caption[pos])
    assert (
        f"suggested: suggested, {caption[with_suggestion[0]]}"
        in _card(page, with_suggestion[0]).inner_text()
    )
    assert "Pairs whose text reads like this one show" in page.inner_text(
        "#cards"
    )  # captions: kept

    first, second = with_suggestion[:2]
    _card(page, first).locator(".obs").click()
    page.keyboard.press("w")  # accepts the suggestion
    typed = 'a "red" car, parked\u2014left'
    _card(page, second).locator("textarea.corr").fill(typed)
    _card(page, without[0]).locator('button[data-d="wrong"]').click()  # no suggestion, no edit
    found = _download(page)
    done = {
        first: ("wrong", scores.loc[first, "suggested_text"]),
        second: ("wrong", typed),
        without[0]: ("wrong", ""),
    }
    pd.testing.assert_frame_equal(found.drop(columns="reviewed_at"), _expected(scores, done, set()))
    _check_times(found, start)
    assert errors == []


def test_thumbnails_of_in_memory_images_render(browser, run_dir, tmp_path, monkeypatch):
    """Images held in memory (the demo, CIFAR) are drawn from the files written beside the page."""
    from lemon.data import DATASETS

    monkeypatch.setitem(DATASETS._entries, "tiny_images", tiny_images_dataset())
    run, _ = with_images(run_dir, tmp_path / "run", lambda s, i: f"tiny/{s}/{i}")
    set_args(run, dataset="tiny_images", n_synthetic=N)
    path = report.write_report(run, audit_size=0)
    page, errors = _open(browser, path)
    first = review_index(run)["flagged"]["pos"][0]
    src = _card(page, first).locator("img.thumb").get_attribute("src")
    assert src == f"report_files/img/{first // 1000:04d}/{first}.png"
    page.wait_for_function(
        "() => { const i = document.querySelector('.card img.thumb');"
        " return i && i.complete && i.naturalWidth === 8; }"
    )
    assert errors == []


@pytest.mark.slow
def test_100000_flagged_pairs_load_a_page_at_a_time(browser, tmp_path):
    """At 100,000 flagged pairs the page stays small, shows its first page, and pages forward while the
    browser asks only for the data file and the images of the cards it shows (time: benchmarks/)."""
    run = large_run(tmp_path / "large", 100_000, 5_000)
    path = report.write_report(run)
    assert path.stat().st_size < 500_000  # the pairs are in report_files/, not in the page
    assert len(review_index(run)["flagged"]["pos"]) == 100_000
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.resource_type, r.url)))
    page.goto(path.as_uri())
    page.wait_for_selector('#cards[data-page="flagged:0"]')

    def images() -> set[str]:
        return {u for kind, u in requests if kind == "image" and "/data/imgs/" in u}

    def data_files() -> list[str]:
        return [u for _, u in requests if "/report_files/flagged/" in u]

    assert page.locator("#cards .card").count() == 25
    assert page.locator("#cards img").count() == 25 * 6  # a thumbnail and 5 neighbours a card
    page.wait_for_function(
        "() => { const i = document.querySelector('.card img.thumb');"
        " return i && i.complete && i.naturalWidth === 24; }"
    )
    first = images()
    assert 0 < len(first) <= 25 * 6 and data_files() == [
        (run / "report_files" / "flagged" / "00000.js").as_uri()
    ]
    _after(page, lambda: page.keyboard.press("n"))
    assert page.get_attribute("#cards", "data-page") == "flagged:1"
    assert page.locator("#cards .card").count() == 25 and page.locator("#cards img").count() == 150
    page.locator("#cards .card").nth(24).scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const i = document.querySelectorAll('.card img.thumb')[24];"
        " return i && i.complete && i.naturalWidth === 24; }"
    )
    assert len(data_files()) == 1  # pages 1-4 share the first data file
    assert len(images()) <= 2 * 25 * 6  # two pages' cards, not 100,000 thumbnails
    # the last pairs (a score filter): only the data file that holds them is loaded
    low = review_index(run)["flagged"]["score"][-30]
    _after(page, lambda: page.locator("#f-max").fill(str(low)) or page.press("#f-max", "Enter"))
    assert page.locator("#cards .card").count() == 25
    assert data_files()[-1].endswith("/report_files/flagged/00999.js") and len(data_files()) == 2
    assert len(images()) <= 3 * 25 * 6
