"""One small registry class reused for every plugin kind (datasets, noises, embedders, scorers, ...).

A registry maps a lowercase name (plus optional aliases) to a factory. Unknown names fail with the list of
valid ones and a close-match suggestion, so a typo on the command line tells the user what to type.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from lemon.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory map filled by the ``@register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (and ``aliases``); duplicates raise.

        A registered class gets ``name`` as its ``name`` attribute (what messages and outputs call it).
        """

        def decorator(obj: T) -> T:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"{self.kind} '{key}' is registered twice.")
            if isinstance(obj, type) and obj.__module__ != "builtins":
                cls: Any = obj  # any registered class, whatever its kind's attributes
                cls.name = name  # the registry key is the class's name: written once, here
            self._entries[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return decorator

    def canonical(self, name: str) -> str:
        """Resolve an alias to its canonical name; raise ``UnknownNameError`` for unknown names."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        choices = self.names(include_aliases=True)
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownNameError(
            f"Unknown {self.kind} '{name}'. Available: {', '.join(self.names())}.{hint}"
        )

    def get(self, name: str) -> T:
        """Return the factory registered under ``name`` (or an alias of it)."""
        return self._entries[self.canonical(name)]

    def build(self, name: str, **kwargs: Any) -> Any:
        """``get(name)(**kwargs)``."""
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def names(self, include_aliases: bool = False) -> list[str]:
        """Sorted canonical names (and aliases when asked), e.g. for argparse ``choices``."""
        names = list(self._entries)
        if include_aliases:
            names += list(self._aliases)
        return sorted(names)

    def aliases(self) -> dict[str, str]:
        """Alias -> canonical name."""
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
