"""lemon.core.cli.command: every command starts the same way (logging to stderr, one-line errors)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from lemon.core.cli import command
from lemon.core.errors import LemonError

REPO = Path(__file__).resolve().parents[2]
#: every command's module (its ``main`` is the command)
COMMANDS = (
    "run_lemon.py",
    "sweep.py",
    "train_clip_from_scratch.py",
    "lemon/report/build.py",
    "lemon/data/__main__.py",
    "lemon/embed/__main__.py",
    "lemon/scale/parts/__main__.py",
    "lemon/downstream/cli.py",
    "lemon/tables/aggregate.py",
)


def test_a_lemon_error_ends_the_command_in_one_line(capsys):
    @command()
    def main(argv=None) -> int:
        raise LemonError("--knn_k must be >= 1, got 0.")

    assert main([]) == 2
    assert capsys.readouterr().err == "error: --knn_k must be >= 1, got 0.\n"
    assert main.__name__ == "main"


def test_logging_goes_to_stderr_at_the_levels_asked_for():
    """In a fresh process (pytest configures logging itself): lemon's INFO shows, another library's
    INFO does not, and the records read 'LEVEL name: message'."""
    script = (
        "import logging\n"
        "from lemon.core.cli import command\n"
        "@command(lemon=logging.INFO)\n"
        "def main():\n"
        "    logging.getLogger('lemon.x').info('progress')\n"
        "    logging.getLogger('other').info('chatter')\n"
        "    logging.getLogger('other').warning('careful')\n"
        "    return 0\n"
        "raise SystemExit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.splitlines() == ["INFO lemon.x: progress", "WARNING other: careful"]


def _decorators(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    return [ast.unparse(d) for d in main.decorator_list]


def test_every_command_starts_through_the_one_helper():
    for name in COMMANDS:
        decorators = _decorators(REPO / name)
        assert any(d.startswith("command(") for d in decorators), (name, decorators)
    configuring = [
        str(p.relative_to(REPO))
        for p in [*REPO.glob("*.py"), *(REPO / "lemon").rglob("*.py")]
        if "logging.basicConfig(" in p.read_text(encoding="utf-8")
    ]
    assert configuring == ["lemon/core/cli.py"]
