"""Fixtures of the report tests: one finished synthetic run, and headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_helpers import CHROMIUM_ARGS, chromium, synthetic_run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A finished run written with --report (tests copy it before changing anything)."""
    return synthetic_run(tmp_path_factory.mktemp("report") / "run", "--report")


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by playwright (the package's own driver; no browser is downloaded)."""
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
