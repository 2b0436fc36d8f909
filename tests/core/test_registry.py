"""Registry (lemon/core/registry.py) and the registries built on it."""

from __future__ import annotations

import pytest

from lemon.core.errors import UnknownNameError
from lemon.core.registry import Registry
from lemon.data import DATASETS
from lemon.scorers import SCORERS


def test_register_get_build_and_aliases():
    reg = Registry("widget")

    @reg.register("square", aliases=("box",))
    def make(side=1):
        return side * side

    assert reg.get("box") is make and reg.build("square", side=3) == 9
    assert reg.names() == ["square"] and reg.names(include_aliases=True) == ["box", "square"]
    assert "box" in reg and len(reg) == 1


def test_duplicate_registration_raises():
    reg = Registry("widget")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(object)


def test_unknown_name_lists_valid_ones_and_suggests():
    reg = Registry("noise type")
    for name in ("random", "noun", "cat"):
        reg.register(name)(object)
    with pytest.raises(
        UnknownNameError,
        match=r"Unknown noise type 'nouns'. Available: cat, noun, random. "
        r"Did you mean 'noun'\?",
    ):
        reg.get("nouns")


@pytest.mark.parametrize("registry", [DATASETS, SCORERS], ids=lambda r: r.kind)
def test_project_registries_resolve_every_name(registry):
    for name in registry.names(include_aliases=True):
        assert registry.get(name) is not None
    assert len(registry) >= 1
