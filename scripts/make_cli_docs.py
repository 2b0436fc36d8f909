"""Write docs/cli.md: every command's flags, generated from the parsers the commands themselves build.

Usage:
    python scripts/make_cli_docs.py            # (re)write docs/cli.md
    python scripts/make_cli_docs.py --check    # exit 1 when docs/cli.md is stale (the test runs this)

Each command's ``main`` is called with no arguments while argparse's parsing is intercepted: the parser it
was about to parse with is caught and described (groups, flags, defaults, help), nothing runs. So the page
follows the code: a flag added to RunConfig, to a scorer's Options, to a launcher or to any parser appears
when this script runs again.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "cli.md"
REGENERATE = "python scripts/make_cli_docs.py"
#: (command as a user types it, module, argv given to its main)
COMMANDS: tuple[tuple[str, str, list[str]], ...] = (
    ("python -m run_lemon", "run_lemon", []),
    ("python sweep.py", "sweep", []),
    ("python sweep.py tables", "sweep", ["tables"]),
    ("python train_clip_from_scratch.py", "train_clip_from_scratch", []),
    ("python -m lemon.data", "lemon.data.__main__", []),
    ("python -m lemon.embed", "lemon.embed.__main__", []),
    ("python -m lemon.scale.parts", "lemon.scale.parts.__main__", []),
    ("python -m lemon.report", "lemon.report.build", []),
    ("python -m lemon.downstream", "lemon.downstream.cli", []),
)
#: argparse's own group titles, which differ between Python versions
_GROUPS = {"positional arguments": "arguments", "optional arguments": "options"}
_DEFAULT = re.compile(r"\s*\(default: [^()]*\)\s*$")


class _Caught(BaseException):
    """Carries the parser a command was about to parse with (a BaseException: no handler swallows it)."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


@contextlib.contextmanager
def _intercepted() -> Iterator[None]:
    original = argparse.ArgumentParser.parse_known_args

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Caught(self)

    argparse.ArgumentParser.parse_known_args = catch  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original  # type: ignore[method-assign]


def parser_of(module: str, argv: list[str]) -> argparse.ArgumentParser:
    """The parser ``module.main(argv)`` builds, caught before it parses anything."""
    main: Callable[..., int] = importlib.import_module(module).main
    with _intercepted():
        try:
            main(argv)
        except _Caught as caught:
            return caught.parser
    raise RuntimeError(f"{module}.main({argv}) parsed no arguments")


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _flag(action: argparse.Action) -> tuple[str, str, str]:
    """(flag, default, help) of one argument."""
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    if action.nargs == 0:
        default = "off"
    elif action.required or not action.option_strings:
        default = "required"
    elif action.default in (None, "", argparse.SUPPRESS):
        default = ""
    else:
        default = f"`{action.default}`"
    text = _DEFAULT.sub("", action.help or "")
    if action.choices is not None and "Choices:" not in text:
        text += f" Choices: {', '.join(map(str, action.choices))}."
    return names, default, text


def describe(parser: argparse.ArgumentParser, title: str, level: int = 2) -> list[str]:
    """Markdown of one parser: its usage line, description and a table of flags per group."""
    lines = [f"{'#' * level} `{title}`", ""]
    if parser.description:
        lines += [_cell(parser.description), ""]
    subcommands: list[tuple[str, argparse.ArgumentParser]] = []
    for group in parser._action_groups:
        rows = []
        for action in group._group_actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                subcommands += [(name, sub) for name, sub in action.choices.items()]
                for name in action.choices:
                    rows.append((f"`{name}`", "", helps.get(name) or ""))
            elif not isinstance(action, argparse._HelpAction):
                rows.append(_flag(action))
        if not rows:
            continue
        title = _GROUPS.get(group.title or "", group.title)
        lines += [f"**{title}**", "", "| flag | default | what it does |", "|---|---|---|"]
        lines += [f"| {_cell(n)} | {_cell(d)} | {_cell(h)} |" for n, d, h in rows]
        lines.append("")
    for name, sub in subcommands:
        lines += describe(sub, f"{title} {name}", level + 1)
    return lines


def render() -> str:
    """The whole page."""
    sys.path.insert(0, str(REPO))  # the commands of this checkout (run_lemon, sweep, ...)
    lines = [
        "# Command-line reference",
        "",
        f"Generated by `{REGENERATE}` from the parsers the commands build; do not edit by hand "
        "(a test fails when this page is stale). Every command answers `--help` with the same flags.",
        "",
    ]
    lines += [f"- [`{title}`](#{_anchor(title)})" for title, _, _ in COMMANDS]
    lines.append("")
    for title, module, argv in COMMANDS:
        lines += describe(parser_of(module, argv), title)
    return "\n".join(lines).rstrip() + "\n"


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading ``# `title` ``."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="Fail when the page is stale.")
    parser.add_argument("--output", type=Path, default=OUT, help="The page (default: docs/cli.md).")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: regenerate it with {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(COMMANDS)} commands)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
