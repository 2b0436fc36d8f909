"""Declarative experiment grids: the :class:`Experiment` contract, :func:`expand` and :class:`RunRef`.

An experiment lists the flag dicts of its runs. Joint variation (e.g. each dataset with its own noise types)
is written as sub-grids sharing a ``common`` part::

    expand([dict(dataset=["mscoco", "mmimdb"], noise_type=["random", "cat", "noun"]),
            dict(dataset="flickr30k", noise_type=["random", "noun"])],
           common=dict(knn_k=[1, 5, 30], data_seed=[0, 1, 2]))

A value that is a list (or tuple) is a set of choices; anything else is one fixed value. A run of one
experiment can consume the output folder of a run of another (e.g. a filter computed by a previous sweep):
:class:`RunRef` names it by experiment and arguments, never by an absolute path, and the sweep resolves it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lemon.core.errors import LemonError

FlagDict = dict[str, Any]


def expand(
    subgrids: Iterable[Mapping[str, Any]] | Mapping[str, Any],
    common: Mapping[str, Any] | None = None,
) -> list[FlagDict]:
    """All flag dicts of ``subgrids`` (each merged over ``common``), in order, duplicates dropped.

    Each sub-grid is the Cartesian product of its values; a key set in both a sub-grid and ``common``
    takes the sub-grid's value. One mapping instead of a list means a single sub-grid.
    """
    if isinstance(subgrids, Mapping):
        subgrids = [subgrids]
    runs: list[FlagDict] = []
    seen: set[str] = set()
    for sub in subgrids:
        grid = {**(common or {}), **sub}
        keys = list(grid)
        choices = [_choices(key, grid[key]) for key in keys]
        for values in itertools.product(*choices):
            run = dict(zip(keys, values))
            key = repr(sorted(run.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                runs.append(run)
    return runs


def _choices(key: str, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise LemonError(
                f"Grid key '{key}' has an empty list of values; give at least one value."
            )
        return list(value)
    return [value]


@dataclass(frozen=True)
class RunRef:
    """The output folder of the run of ``experiment`` whose arguments include ``match``.

    Resolved by the sweep to ``<output_root>/<experiment>/<hash>``; the referring run's hash uses the
    root-free ``<experiment>/<hash>``, so moving the output root does not orphan finished runs.
    """

    experiment: str
    match: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, experiment: str, **match: Any) -> None:
        object.__setattr__(self, "experiment", experiment)
        object.__setattr__(self, "match", dict(match))

    def __hash__(self) -> int:
        return hash((self.experiment, tuple(sorted(self.match.items()))))

    def __repr__(self) -> str:
        sel = ", ".join(f"{k}={v!r}" for k, v in sorted(self.match.items()))
        return f"RunRef({self.experiment!r}{', ' if sel else ''}{sel})"


class Experiment:
    """A named grid of runs of ``script`` (a module with ``main(argv) -> int``, default ``run_lemon``).

    Subclasses set ``name`` (the registry key and output sub-folder) and implement :meth:`grid`. Missing
    attributes fail at import, not when a sweep starts. The registry of experiments lives with the grids
    (``experiments.EXPERIMENTS``); this module knows none of them.
    """

    name: ClassVar[str]
    script: ClassVar[str] = "run_lemon"
    aliases: ClassVar[tuple[str, ...]] = ()  # earlier names of the same grid

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.__dict__.get("name"), str) or not cls.__dict__["name"]:
            raise TypeError(
                f"Experiment class {cls.__name__} must set a class attribute name = '...'."
            )
        if "grid" not in cls.__dict__:
            raise TypeError(f"Experiment {cls.name} must define grid() -> list[dict].")

    def grid(self) -> list[FlagDict]:
        """The flag dicts of every run (``--output_dir`` is added by the sweep)."""
        raise NotImplementedError  # pragma: no cover  (enforced by __init_subclass__)
