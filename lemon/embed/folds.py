"""Scoring with CLIPs trained on the data they score: fold models, and the pairs a model has seen.

A CLIP trained from scratch memorises its training pairs: scored by it, they look cleaner than pairs it never
saw. ``train_clip_from_scratch.py`` records the content ids of the images it trained on in
``train_info.json`` (``train_identities``), so a run can say how many of the pairs it scores the model saw.
With ``--folds K`` it trains K models, model f without the images of fold f, into ``DIR/fold_<f>``, and
``DIR/train_info.json`` lists the images each fold held out. ``--clip_model DIR`` then embeds every row with
the model that never saw it, like cleanlab's cross-validated probabilities; rows of no fold (val, test, new
data) go to a fold by a seeded scramble of their content id. Each fold model is an ordinary checkpoint with
its own id, so the embedding cache keeps the K models' embeddings apart.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lemon.core.errors import LemonError, ModelNotFoundError
from lemon.data.base import DatasetSplits
from lemon.data.features import Features
from lemon.data.splitting import mix64
from lemon.embed.base import Embedder, EmbedOptions
from lemon.embed.cache import EmbeddingCache
from lemon.embed.hub import require_weights
from lemon.embed.stage import embed_dataset
from lemon.train.info import fold_dir, parse_ids, read_train_info

log = logging.getLogger(__name__)


@dataclass
class FoldModel:
    """K checkpoints, model f trained without the images of fold f (``held_out[f]``, sorted ids)."""

    folder: Path
    embedders: list[Embedder]
    held_out: list[np.ndarray]
    seed: int

    @property
    def name(self) -> str:
        return f"{len(self.embedders)} fold models in {self.folder}"

    def fold_of(self, identity: np.ndarray) -> np.ndarray:
        """(n,) the fold model to embed each image with: the one that held it out, else (an image no
        model trained on) a seeded scramble of its content id."""
        identity = np.asarray(identity, dtype=np.uint64)
        keys = np.concatenate(self.held_out)
        folds = np.repeat(np.arange(len(self.held_out)), [len(h) for h in self.held_out])
        order = np.argsort(keys, kind="stable")
        keys, folds = keys[order], folds[order]
        pos = np.minimum(np.searchsorted(keys, identity), max(len(keys) - 1, 0))
        known = (keys[pos] == identity) if len(keys) else np.zeros(len(identity), dtype=bool)
        unseen = (mix64(identity, self.seed, "fold") % np.uint64(len(self.embedders))).astype(
            np.int64
        )
        return np.where(known, folds[pos] if len(keys) else 0, unseen)


def load_fold_model(
    folder: Path, info: dict, device: str, precision: str, cache_root: Path | None
) -> FoldModel:
    """The K checkpoints a ``--folds K`` training wrote; an unfinished one is a one-line error."""
    from lemon.embed.checkpoint import checkpoint_embedder, checkpoint_layout

    k = int(info["folds"])
    held = info.get("held_out")
    missing = [f for f in range(k) if checkpoint_layout(fold_dir(folder, f)) is None]
    if missing or not isinstance(held, list) or len(held) != k:
        what = f"fold_{missing[0]}" if missing else "the held-out images of train_info.json"
        raise ModelNotFoundError(
            f"{folder} is an unfinished --folds {k} training ({what} missing): run the same "
            "train_clip_from_scratch.py command again to finish it."
        )
    embedders = [
        checkpoint_embedder(
            str(fold_dir(folder, f)), device=device, precision=precision, cache_root=cache_root
        )
        for f in range(k)
    ]
    seed = int(info.get("config", {}).get("data_seed", 0))
    return FoldModel(folder, embedders, [parse_ids(h) for h in held], seed)


def open_model(
    name: str,
    *,
    device: str,
    precision: str,
    cache: EmbeddingCache,
) -> Embedder | FoldModel:
    """The model ``--clip_model`` names: one embedder, or the K models of a ``--folds`` training.

    Fails at once (before any data is read) when a Hub model's weights are neither in the local Hugging
    Face cache nor downloadable and the embedding cache holds nothing it computed.
    """
    from lemon.embed import build_embedder

    cache_root = None if cache.root is None else cache.root.parent
    path = Path(name).expanduser()
    info = read_train_info(path) if path.is_dir() else None
    if info is not None and int(info.get("folds", 1)) > 1:
        return load_fold_model(path, info, device, precision, cache_root)
    embedder = build_embedder(name, device=device, precision=precision, cache_root=cache_root)
    wanted = embedder.hub_weights()
    cached = cache.root is not None and any((cache.root / embedder.id).glob("*.npy"))
    if wanted is not None and not cached:
        require_weights(embedder.name, *wanted)
    return embedder


def embed_with(
    model: Embedder | FoldModel,
    splits: DatasetSplits,
    cache: EmbeddingCache,
    options: EmbedOptions,
) -> Features:
    """Embed ``splits`` with one model (warning about pairs it trained on) or out of fold, as
    ``options`` say (:class:`~lemon.embed.base.EmbedOptions`)."""
    if isinstance(model, FoldModel):
        return embed_out_of_fold(model, splits, cache, options)
    features = embed_dataset(splits, model, cache, options)
    info = read_train_info(model.folder)
    if info is not None and info.get("train_identities"):
        trained = parse_ids(info["train_identities"])
        features.provenance.seen_by_model = seen_by_model(splits, features, trained, model.name)
    return features


def seen_by_model(
    splits: DatasetSplits, features: Features, trained: np.ndarray, model: str
) -> dict[str, int]:
    """Per split, how many scored pairs have an image the model trained on (sorted ``trained`` ids);
    warns when any has."""
    seen = {}
    for name, f in features.splits.items():
        ids = splits[name].identities()[f.ids]
        pos = np.minimum(np.searchsorted(trained, ids), len(trained) - 1)
        seen[name] = int(np.sum(trained[pos] == ids))
    total = sum(seen.values())
    if total and _trained_here_by_design(model, splits.name):
        log.info(
            "%s was trained on the %s pairs of %s by design (a from-scratch model, as the paper's): "
            "it scores their errors like clean pairs, so the label-free estimate uses the held-out "
            "splits.",
            model,
            ", ".join(s for s, n in seen.items() if n),
            splits.name,
        )
    elif total:
        per_split = ", ".join(f"{s} {n}" for s, n in seen.items() if n)
        log.warning(
            "%d of %d pairs to score (%s) have images --clip_model %s was trained on: it scores them "
            "as cleaner than pairs it never saw (it memorised them); train it with --folds K to "
            "score every pair out of fold.",
            total,
            sum(len(f) for f in features.splits.values()),
            per_split,
            model,
        )
    return seen


def _trained_here_by_design(model: str, dataset: str) -> bool:
    """Whether ``model`` is a built-in from-scratch checkpoint whose recipe trains it on ``dataset``
    (demo_clip on the demo): its memorising that data is the setting, not a user's slip."""
    from lemon.embed.checkpoint import NAMED_CHECKPOINTS

    return any(e.name == model and e.train.get("dataset") == dataset for e in NAMED_CHECKPOINTS)


def embed_out_of_fold(
    model: FoldModel, splits: DatasetSplits, cache: EmbeddingCache, options: EmbedOptions
) -> Features:
    """Every split embedded by each fold model; each row keeps the embedding of the model that never saw
    its image, and the train split as every model embeds it forms the (stacked) reference set."""
    views = [embed_dataset(splits, e, cache, options) for e in model.embedders]
    base = views[0]
    # the train split as each model embeds it (model 0's a copy: base's own rows are mixed below)
    fold_train = [copy.copy(views[0].splits["train"])] + [v.splits["train"] for v in views[1:]]
    counts: dict[str, list[int]] = {}  # rows per fold model, per split
    for name, split in base.splits.items():
        if any(not np.array_equal(v.splits[name].ids, split.ids) for v in views[1:]):
            raise LemonError(
                f"The fold models decoded different images of the '{name}' split; check the "
                "image files and run again."
            )
        fold = model.fold_of(splits[name].identities()[split.ids])
        img, txt = np.array(split.img), np.array(split.txt)  # new arrays: the stores are read-only
        for f, view in enumerate(views):
            rows = fold == f
            img[rows], txt[rows] = view.splits[name].img[rows], view.splits[name].txt[rows]
        split.img, split.txt, split.fold = img, txt, fold
        counts[name] = np.bincount(fold, minlength=len(views)).tolist()
    base.fold_train = fold_train
    base.label_prompt_txt = None  # one model's class prompts fit only that model's rows
    last = views[-1].provenance
    base.provenance.embedder = model.name
    base.provenance.embedder_id = "+".join(e.id for e in model.embedders)
    base.provenance.cache_hits, base.provenance.cache_misses = last.cache_hits, last.cache_misses
    log.info("out-of-fold embeddings from %s; rows per fold model: %s", model.name, counts)
    return base
