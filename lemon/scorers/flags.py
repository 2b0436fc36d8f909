"""The run_lemon flags of the scorers' own options, collected from the registry.

A scorer declares its settings once, as :func:`~lemon.scorers.base.option` fields of its ``Options``
dataclass (:class:`~lemon.scorers.base.ScorerOptions` subclass); this module turns them into flags:
``--<field name>``, one help group per set of scorers reading them, checked (a flag of another scorer
than ``--scorer`` is refused), recorded in args.json and handed back to the scorer as typed options. Scorers
sharing a setting (blip_itm and blip_capfilt read ``--blip_model``) declare it once, in a common base
``Options`` class.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lemon.core.errors import LemonError
from lemon.core.flags import flag_fields
from lemon.core.registry import Registry
from lemon.scorers.base import SCORER_GROUP, ScorerOptions


@dataclass(frozen=True)
class ScorerFlag:
    """One scorer option that is a flag: its field, the Options class declaring it (which types it),
    and the scorers reading it (canonical names, sorted)."""

    field: dataclasses.Field
    owner: type[ScorerOptions]
    scorers: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def default(self) -> Any:
        return self.field.default

    @property
    def group(self) -> str:
        """The help-group title of this flag: the scorers that read it."""
        return f"options of --scorer {', '.join(self.scorers)}"


@functools.lru_cache(maxsize=1)
def all_flags() -> dict[str, ScorerFlag]:
    """Flag name -> :class:`ScorerFlag` over every registered scorer (:func:`collect` of SCORERS)."""
    from lemon.scorers import SCORERS

    return collect(SCORERS)


def collect(scorers: Registry) -> dict[str, ScorerFlag]:
    """Flag name -> :class:`ScorerFlag` over the scorers of ``scorers``, in the order of its names and
    each ``Options`` class's fields. A name declared by two different fields fails at once."""
    found: dict[str, tuple[dataclasses.Field, type[ScorerOptions], list[str]]] = {}
    for scorer in scorers.names():
        options = scorers.get(scorer).Options
        for f in flag_fields(options):
            if f.metadata["group"] != SCORER_GROUP:
                continue
            if f.name in found and found[f.name][0] is not f:
                raise TypeError(
                    f"Scorer option '{f.name}' is declared twice ({found[f.name][1].__qualname__} and "
                    f"{options.__qualname__}); declare it once, in an Options class both inherit."
                )
            owner = next(c for c in options.__mro__ if f.name in vars(c).get("__annotations__", {}))
            found.setdefault(f.name, (f, owner, []))[2].append(scorer)
    return {name: ScorerFlag(f, owner, tuple(users)) for name, (f, owner, users) in found.items()}


def defaults() -> dict[str, Any]:
    """Every scorer flag's default, by name."""
    return {name: sf.default for name, sf in all_flags().items()}


def given(values: Mapping[str, Any]) -> dict[str, Any]:
    """The scorer flags among ``values`` that differ from their defaults (what a run actually sets)."""
    flags = all_flags()
    return {n: v for n, v in values.items() if n in flags and v != flags[n].default}


def check_given(scorer: str, values: Mapping[str, Any]) -> None:
    """Refuse, in one line, a scorer flag set (to other than its default) that ``scorer`` does not read,
    and values its ``Options`` refuses; unknown names raise too."""
    from lemon.scorers import SCORERS

    flags = all_flags()
    unknown = sorted(set(values) - set(flags))
    if unknown:
        raise LemonError(
            f"Unknown scorer option(s) {', '.join(unknown)}; known: {', '.join(flags)}."
        )
    name = SCORERS.canonical(scorer)
    for flag_name, value in given(values).items():
        readers = flags[flag_name].scorers
        if name not in readers:
            raise LemonError(
                f"--{flag_name} {value} is an option of --scorer {', '.join(readers)}, and --scorer "
                f"{scorer} would ignore it; drop it or pass --scorer {readers[0]}."
            )
    options_of(scorer, values)


def options_of(scorer: str, values: Mapping[str, Any], **shared: Any) -> ScorerOptions:
    """``scorer``'s typed options: the ``shared`` values its Options class has, and its own flags from
    ``values`` (the rest at their defaults; flags of other scorers are not read)."""
    from lemon.scorers import SCORERS

    cls = SCORERS.get(scorer).Options
    names = {f.name for f in dataclasses.fields(cls)}
    own = {n: v for n, v in values.items() if n in names and n in all_flags()}
    return cls(**{n: v for n, v in shared.items() if n in names}, **own)
