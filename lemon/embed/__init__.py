"""EMBEDDERS registry and the embedding stage.

``--clip_model`` values, parsed in one place (:func:`parse_embedder_name`):

- a registered name: ``huggingface_clip`` (default, openai/clip-vit-base-patch32), ``biomed_clip``, the
  from-scratch checkpoints (``demo_clip``, ``mimic_clip_from_scratch_random``, ...);
- ``PREFIX:ARG`` where PREFIX is a registered name: ``open_clip:ViT-B-32/openai``, ``hf-hub:ORG/REPO``,
  ``huggingface_clip:REPO_OR_FOLDER``, ``local-dir:/path`` (= ``checkpoint:/path``);
- a path to a local checkpoint folder (open_clip or transformers layout).

Each registered factory is called as ``factory(arg, device=..., precision=..., cache_root=...)`` and
returns an :class:`~lemon.embed.base.Embedder` that loads its weights lazily.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from lemon.core.errors import UnknownNameError
from lemon.embed import checkpoint, hf_clip, open_clip
from lemon.embed.base import Embedder
from lemon.embed.registry import DEFAULT_EMBEDDER, EMBEDDERS
from lemon.embed.stage import embed_dataset

__all__ = [
    "DEFAULT_EMBEDDER",
    "EMBEDDERS",
    "Embedder",
    "build_embedder",
    "embed_dataset",
    "parse_embedder_name",
]


def parse_embedder_name(name: str) -> tuple[str, str | None]:
    """``--clip_model`` value -> (canonical registry name, argument or None)."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix in EMBEDDERS:
        return EMBEDDERS.canonical(prefix), rest
    if name in EMBEDDERS:
        return EMBEDDERS.canonical(name), None
    if Path(name).expanduser().exists():
        return "checkpoint", name
    close = difflib.get_close_matches(name, EMBEDDERS.names(include_aliases=True), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownNameError(
        f"Unknown embedder '{name}'. Available: {', '.join(EMBEDDERS.names())}; or "
        "open_clip:ARCH/PRETRAINED, hf-hub:ORG/REPO, huggingface_clip:REPO_OR_FOLDER, or the "
        f"path of a local checkpoint folder.{hint}"
    )


def build_embedder(
    name: str, device: str = "cpu", precision: str = "auto", cache_root: Path | None = None
) -> Embedder:
    """The embedder ``name`` refers to (weights not loaded yet, except a named checkpoint trained now)."""
    key, arg = parse_embedder_name(name)
    return EMBEDDERS.build(key, arg=arg, device=device, precision=precision, cache_root=cache_root)
