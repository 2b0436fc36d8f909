"""Registry (lemon/core/registry.py) and the registries built on it."""

from __future__ import annotations

import pytest

from lemon.core.errors import UnknownNameError
from lemon.core.registry import Registry
from lemon.data import DATASETS
from lemon.embed import EMBEDDERS
from lemon.noise import NOISES
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


#: names the original LEMoN's commands and the paper's grids use (SPEC.md sections 1, 2, 3 and 7): old commands
#: and experiment grids name them, so each must stay registered under exactly this spelling
ORIGINAL_NAMES = {
    "dataset": {
        "mscoco",
        "flickr30k",
        "mmimdb",
        "mimiccxr_caption",
        "cc3m",
        "cifar10",
        "cifar100",
        "mini_imagenet",
        "stanford_cars",
    },
    "noise type": {"symmetric", "asymmetric", "real", "random", "noun", "cat"},
    "scorer": {
        "lemon",
        "clip_sim",
        "clip_logits",
        "deep_knn",
        "dis_x",
        "dis_y",
        "div_x",
        "div_y",
        "simifeat",
        "self_confidence",
        "normalized_margin",
        "confidence_weighted_entropy",
        "clipcleaner",
        "blip_itm",
        "blip_capfilt",
        "llava",
        "vdc",
        "aum",
        "datamap",
    },
    "embedder": {"huggingface_clip", "biomed_clip"},
}


@pytest.mark.parametrize("registry", [DATASETS, NOISES, SCORERS, EMBEDDERS], ids=lambda r: r.kind)
def test_project_registries_keep_the_original_names(registry):
    """Every original name is registered as a canonical name (not only an alias), a registered class
    answers to its key (what messages and outputs call it), and an alias is its canonical entry."""
    names = set(registry.names())
    assert ORIGINAL_NAMES[registry.kind] <= names, ORIGINAL_NAMES[registry.kind] - names
    for name in names:
        entry = registry.get(name)
        if isinstance(entry, type):
            assert entry.name == name
    for alias, canonical in registry.aliases().items():
        assert alias not in names and registry.get(alias) is registry.get(canonical)


def test_noise_alias_of_the_original():
    """The original's 'pairflip' is the asymmetric noise (SPEC.md section 2: pair-flip)."""
    assert NOISES.canonical("pairflip") == "asymmetric"
