"""Benchmark of the review page: writing it, its size, and how fast headless Chromium shows a page of it.

Usage:
    python benchmarks/bench_report.py                          # 100,000 flagged pairs (+5,000 unflagged)
    python benchmarks/bench_report.py --n_flagged 10000
    python benchmarks/bench_report.py --run /tmp/demo          # the report of a finished run, as it is

Without ``--run``, a run folder is generated as tests/report/review_helpers.py's ``large_run`` makes it
for tests/report/test_review_browser.py: random scores, 10 neighbours a pair (5 shown), one small PNG file
a pair (the thumbnails are file URLs). ``python -m lemon.report`` is timed writing report.html and
report_files/ (in a subprocess, so the time includes its imports, as a user's command does). Then Debian's
chromium (``/usr/bin/chromium``, driven by playwright) opens report.html from file:// ``--repeats`` times,
each in a fresh browser context: time to first page = the page's ``performance.now()`` when its first
page of 25 cards is in the DOM (the page records it); next page = the wall time from pressing ``n`` to the
next 25 cards drawn. The medians are printed with the sizes and the image requests of the first page.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def folder_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def browse(report: Path, repeats: int) -> dict[str, float]:
    """Median time to first page and to the next page over ``repeats`` fresh browser contexts."""
    from playwright.sync_api import sync_playwright

    first, forward, images = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        for _ in range(repeats):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            requested: list[str] = []
            page.on("request", lambda r, out=requested: out.append(r.resource_type))
            page.goto(report.as_uri())
            page.wait_for_selector('#cards[data-page="flagged:0"]')
            first.append(float(page.get_attribute("#cards", "data-first-page-ms")))
            page.wait_for_load_state("load")
            images.append(requested.count("image"))
            start = time.perf_counter()
            page.keyboard.press("n")
            page.wait_for_selector('#cards[data-page="flagged:1"]')
            forward.append(1000 * (time.perf_counter() - start))
            context.close()
        browser.close()
    return {
        "first_page_ms": statistics.median(first),
        "next_page_ms": statistics.median(forward),
        "images_first_page": statistics.median(images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n_flagged", type=int, default=100_000)
    parser.add_argument("--n_clean", type=int, default=5_000)
    parser.add_argument("--run", help="Measure the report of this finished run instead.")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        if args.run:
            run = Path(args.run)
        else:
            sys.path.insert(0, str(REPO / "tests" / "report"))
            from review_helpers import large_run

            start = time.perf_counter()
            run = large_run(Path(tmp) / "large", args.n_flagged, args.n_clean)
            print(
                f"generated {args.n_flagged + args.n_clean:,} pairs in {time.perf_counter() - start:.1f} s"
            )
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lemon.report", str(run)], check=True, cwd=REPO)
        written = time.perf_counter() - start
        page_bytes = (run / "report.html").stat().st_size
        side_bytes, side_files = folder_size(run / "report_files")
        seen = browse(run / "report.html", args.repeats)
    print(
        f"python -m lemon.report: {written:.1f} s; report.html {page_bytes / 1e3:.0f} kB; "
        f"report_files/ {side_bytes / 1e6:.1f} MB in {side_files:,} files\n"
        f"chromium (median of {args.repeats}): first page {seen['first_page_ms']:.0f} ms after "
        f"navigation, next page {seen['next_page_ms']:.0f} ms, {seen['images_first_page']:.0f} "
        "image requests for the first page"
    )


if __name__ == "__main__":
    main()
