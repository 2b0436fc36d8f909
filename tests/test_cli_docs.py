"""docs/cli.md is generated from the commands' parsers (scripts/make_cli_docs.py) and must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_cli_docs.py"


def _check(page: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--output", str(page)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_cli_docs_are_current():
    done = _check(REPO / "docs" / "cli.md")
    assert done.returncode == 0, done.stderr  # names the command that regenerates the page


def test_a_stale_page_fails_naming_the_regeneration_command(tmp_path):
    page = tmp_path / "cli.md"
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    page.write_text(current.replace("| `--knn_k` |", "| `--knn_kk` |"), encoding="utf-8")
    done = _check(page)
    assert done.returncode == 1
    assert done.stderr == f"{page} is stale: regenerate it with python scripts/make_cli_docs.py\n"


def test_the_page_lists_every_flag_of_run_lemon():
    """Every run_lemon flag (the scorers' own ones included) has its row, with its default."""
    from lemon.run.config import build_parser

    page = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    run_lemon = page.split("## `python sweep.py`")[0]
    for action in build_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"| `{flag}` |" in run_lemon, flag
    assert "| `--vdc_questions` | `6` | vdc: specific questions per text. |" in run_lemon
