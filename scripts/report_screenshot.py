"""Screenshot of a run's report.html in headless Chromium, as docs/report_demo.png shows it.

Usage:
    python -m run_lemon --dataset demo --output_dir /tmp/demo --report
    python scripts/report_screenshot.py /tmp/demo docs/report_demo.png

Opens the page from file:// in Debian's chromium (driven by playwright), marks the first card wrong, the
second right and leaves the third focused (so the picture shows the review buttons in use) and writes the
top of the page (summary, metrics, the first cards) as a 1500x1700 PNG. The decisions are made in a fresh
browser profile and never leave it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("output", help="The PNG to write.")
    parser.add_argument("--width", type=int, default=1500)
    parser.add_argument("--height", type=int, default=1700)
    args = parser.parse_args()
    page_path = Path(args.run_dir).resolve() / "report.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(page_path.as_uri())
        page.wait_for_selector('#cards[data-page="flagged:0"]')
        cards = page.locator("#cards .card")
        cards.nth(0).locator('button[data-d="wrong"]').click()
        cards.nth(1).locator('button[data-d="right"]').click()
        cards.nth(2).locator(".obs").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.card img')].slice(0, 30)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        page.screenshot(path=args.output)
        browser.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
