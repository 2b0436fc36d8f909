"""The load stage: dataset -> (injected noise) -> embeddings (cached) -> the reference cap and val subset.

``python -m lemon.embed`` and a part job of ``python -m lemon.scale.parts`` call it too, so they read and
embed exactly what a run does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lemon.core.errors import LemonError
from lemon.core.paths import cache_root
from lemon.data import DATASETS
from lemon.data.features import Features
from lemon.method.hparams import DEFAULT_KNN_K, LEMON_FIX_K
from lemon.neighbors.base import check_k
from lemon.run.config import RunConfig, flag_names

if TYPE_CHECKING:
    from lemon.data.base import Dataset, DatasetSplits
    from lemon.embed.base import Embedder, EmbedOptions
    from lemon.embed.cache import EmbeddingCache
    from lemon.embed.folds import FoldModel


def resolve_k(cfg: RunConfig) -> int:
    """--knn_k, else 30 with --lemon_fix or --real_dataset (without labels LEMoN_FIX is the setting),
    else the dataset's default_knn_k, else the original's 5."""
    if cfg.knn_k is not None:
        return cfg.knn_k
    if cfg.lemon_fix or cfg.real_dataset:
        return LEMON_FIX_K
    dataset_k = DATASETS.get(cfg.dataset).default_knn_k if cfg.dataset in DATASETS else None
    return dataset_k or DEFAULT_KNN_K


def load_dataset(cfg: RunConfig) -> tuple[Dataset, str | None]:
    """The run's dataset and the canonical name of its noise type (an unsupported one fails here)."""
    from lemon.noise import NOISES

    dataset = DATASETS.get(cfg.dataset)(cfg.data_options())
    # aliases (e.g. 'pairflip') name the same noise as their canonical name; unknown names fail here
    noise_name = None if cfg.noise_type is None else NOISES.canonical(cfg.noise_type)
    if noise_name is not None and noise_name not in dataset.noise_types:
        supported = (
            ", ".join(dataset.noise_types) or "none (the data carries its own observed labels)"
        )
        raise LemonError(
            f"Noise type '{cfg.noise_type}' is not supported for dataset '{cfg.dataset}'; "
            f"supported: {supported}."
        )
    return dataset, noise_name


def embedding_inputs(
    cfg: RunConfig,
    dataset: Dataset,
    noise_name: str | None,
    device: str,
    cache: EmbeddingCache | None = None,
) -> tuple[DatasetSplits, Embedder | FoldModel, EmbeddingCache]:
    """What the embedding stage embeds (the noisy splits), with which model (one embedder, or the K
    models of a ``--folds`` training), into which cache.

    The model comes first: weights that cannot be had offline fail before any data is read.
    ``python -m lemon.embed`` calls this too, so sharded embedding fills exactly the entries a run reads.
    ``cache``: the cache to read (default: the one --cache_dir names), e.g. one that refuses to compute.
    """
    from lemon.data.loading import load_splits
    from lemon.embed.cache import EmbeddingCache
    from lemon.embed.folds import open_model
    from lemon.embed.stage import embedder_name
    from lemon.noise import apply_noise

    if cache is None:
        cache = EmbeddingCache(cache_root(cfg.cache_dir))
    model = open_model(
        embedder_name(cfg.dataset, cfg.clip_model),
        device=device,
        precision=cfg.precision,
        cache=cache,
    )
    splits = load_splits(dataset)
    if not cfg.real_dataset:
        noise_type = noise_name or dataset.noise_types[0]
        splits = apply_noise(splits, noise_type, cfg.resolved_noise_level, cfg.data_seed)
    return splits, model, cache


def embed_options(cfg: RunConfig, prompt: str) -> EmbedOptions:
    """How the run embeds its pairs (``prompt``: the dataset's class prompt)."""
    from lemon.embed.base import EmbedOptions

    return EmbedOptions(
        prompt=prompt,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        image_identity=cfg.image_identity,
        image_decode=cfg.image_decode,
    )


def load_features(
    cfg: RunConfig, k: int, device: str, cache: EmbeddingCache | None = None
) -> Features:
    """Dataset -> (noise) -> embeddings, then the seeded reference cap and the val subset."""
    features = load_embedded(cfg, device, cache)
    features.cap_reference(cfg.compr_dataset_size_limit, np.random.default_rng([cfg.data_seed, 1]))
    n_val = len(features.splits["val"])
    if cfg.subset_val_set is not None and 0 < cfg.subset_val_set < n_val:
        pick = np.random.default_rng([cfg.data_seed, 2]).choice(
            n_val, cfg.subset_val_set, replace=False
        )
        features.splits["val"] = features.splits["val"].subset(np.sort(pick))
    check_k(k, len(features.reference_index))
    return features


def load_embedded(cfg: RunConfig, device: str, cache: EmbeddingCache | None = None) -> Features:
    """Dataset -> (noise) -> embeddings: every split as loaded, before the reference cap (what a
    ``--detector`` run scores against another run's reference set)."""
    dataset, noise_name = load_dataset(cfg)
    if dataset.precomputed:
        if not dataset.noise_types and cfg.noise_level is not None:
            raise LemonError(
                f"--noise_level is not used with --dataset {cfg.dataset}: the data carries its "
                "own observed labels; drop --noise_level."
            )
        features = dataset.load_features()
    else:
        from lemon.embed.folds import embed_with

        splits, model, cache = embedding_inputs(cfg, dataset, noise_name, device, cache)
        features = embed_with(model, splits, cache, embed_options(cfg, dataset.options.prompt))
    if cfg.real_dataset:
        for split in features.splits.values():
            split.clean = split.is_mislabel = None
    return features


def run_config(args: dict[str, Any]) -> RunConfig:
    """The RunConfig a run's args.json records (keys that are not flags, or flags of another version of
    lemon that this one lacks, left out)."""
    names = set(flag_names())
    return RunConfig.from_flags({k: v for k, v in args.items() if k in names})


def load_run_features(run_dir: str | Path, device: str) -> tuple[Features, dict[str, Any]]:
    """The features a finished run scored, rebuilt from its args.json (embeddings from the cache), and
    those args: what a downstream step (:mod:`lemon.downstream`) trains on."""
    args = json.loads((Path(run_dir) / "args.json").read_text(encoding="utf-8"))
    cfg = run_config(args)
    k = args.get("resolved", {}).get("knn_k") or resolve_k(cfg)
    return load_features(cfg, k, device), args
