"""Command-line flags generated from a dataclass: one generator for run_lemon and the CLIP trainer.

A field declared with :func:`flag` carries its help text, its help group and (optionally) its choices;
:func:`add_flags` turns every such field into ``--<field name>`` in its group, with the default shown, so
``--help``, the defaults and the validation read one source. Choices may be a callable (a registry's
names), evaluated only when the parser is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from lemon.core.errors import LemonError

Choices = Callable[[], Sequence[str]] | Sequence[str] | None


def flag(
    default: Any,
    help: str,
    group: str,
    choices: Choices = None,
    metavar: str | None = None,
    identity: bool | None = None,
) -> Any:
    """A dataclass field that is also a command-line flag.

    ``identity``: whether it changes *what* a run computes (runs differing in it are different results);
    default: True unless the group is 'output' or 'compute' (where and how a run executes).
    """
    if identity is None:
        identity = group not in ("output", "compute")
    meta = {
        "help": help,
        "group": group,
        "choices": choices,
        "metavar": metavar,
        "identity": identity,
    }
    return dataclasses.field(default=default, metadata=meta)


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` declared with :func:`flag`, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "group" in f.metadata]


def _value_type(cls: type, f: dataclasses.Field) -> type:
    """int, float, str or bool from the field's annotation (``Optional[...]`` unwrapped)."""
    hint = typing.get_type_hints(cls)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return hint if hint in (int, float, bool) else str


def choice_names(f: dataclasses.Field) -> Sequence[str] | None:
    """The values a :func:`flag` field allows (its choices, a registry's names evaluated now), or None."""
    choices = f.metadata["choices"]
    return choices() if callable(choices) else choices


def add_flag(section: Any, cls: type, f: dataclasses.Field) -> None:
    """Add ``--<f.name>`` to ``section`` (a parser or an argument group): a switch for a boolean, else
    typed from the annotation, its choices listed and its default shown in the help."""
    meta, kind = f.metadata, _value_type(cls, f)
    if kind is bool:
        section.add_argument(f"--{f.name}", action="store_true", help=meta["help"])
        return
    text = meta["help"]
    names = choice_names(f)
    if names is not None:
        text += f" Choices: {', '.join(names)}."
    default = f.default if f.default is not dataclasses.MISSING else None
    if default not in (None, ""):
        text += f" (default: {default})"
    section.add_argument(
        f"--{f.name}", type=kind, default=default, help=text, metavar=meta["metavar"]
    )


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    groups: dict[str, str],
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Add ``--<name>`` for every :func:`flag` field of ``cls`` (or those in ``only``), grouped.

    ``groups`` maps a field's group key to the title shown in ``--help`` (and fixes the groups' order);
    returns the argument group of each key, so that more flags can join them.
    """
    sections = {key: parser.add_argument_group(title) for key, title in groups.items()}
    for f in flag_fields(cls):
        if only is None or f.name in only:
            add_flag(sections[f.metadata["group"]], cls, f)
    return sections


class HelpfulParser(argparse.ArgumentParser):
    """argparse with one-line errors: an unknown flag names the closest valid one, no usage dump.

    ``raise_errors=True`` raises :class:`~lemon.core.errors.LemonError` instead of exiting (to check flags
    without running anything, e.g. every job of a sweep).
    """

    def __init__(self, *args: Any, raise_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raise_errors = raise_errors

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._given = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        flags = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        unknown = [
            name
            for name in (a.split("=", 1)[0] for a in getattr(self, "_given", []))
            if name.startswith("--") and not any(f.startswith(name) for f in flags)
        ]
        if unknown and not message.startswith("unrecognized arguments:"):
            # a misspelled flag also makes a required one look missing: name the misspelling
            message = f"unrecognized arguments: {unknown[0]}"
        hint = ""
        if message.startswith("unrecognized arguments:"):
            given = message.split(":", 1)[1].split()
            for arg in given:
                close = difflib.get_close_matches(arg.split("=", 1)[0], flags, n=1)
                if arg.startswith("--") and close:
                    hint = f" Did you mean {close[0]}?"
                    break
        if self.raise_errors:
            raise LemonError(f"{message}.{hint}")
        sys.stderr.write(f"{self.prog}: error: {message}.{hint} See {self.prog} --help.\n")
        raise SystemExit(2)
