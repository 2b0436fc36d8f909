"""The pairs a from-scratch CLIP trains on: a dataset's (noisy) split, optionally LEMoN-filtered."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lemon.core.errors import LemonError
from lemon.train.config import TrainConfig


def keep_cleanest(split, scores_csv: str, top_n: int, texts: list[str]):
    """The ``top_n`` pairs of ``split`` with the lowest score in a previous run's scores.csv (train rows);
    ``scores_csv`` may also be that run's folder."""
    import pandas as pd

    path = Path(scores_csv).expanduser()
    if path.is_dir():
        path = path / "scores.csv"
    if not path.is_file():
        raise LemonError(f"--filter_scores {path}: file not found (a run folder's scores.csv).")
    df = pd.read_csv(path, keep_default_na=False)
    missing = {"split", "idx", "score"} - set(df.columns)
    if missing:
        raise LemonError(f"{path} lacks columns {sorted(missing)}: not a run_lemon scores.csv.")
    rows = df[df["split"] == "train"]
    if rows.empty:
        raise LemonError(
            f"{path} has no train rows (was that run made with --skip_train?); rerun without it."
        )
    idx = rows["idx"].to_numpy(np.int64)
    if (
        len(rows) != len(split)
        or idx.max() >= len(split)
        or (
            "text" in rows
            and not np.array_equal(
                rows["text"].astype(str).to_numpy(),
                np.asarray(texts, dtype=object)[idx].astype(str),
            )
        )
    ):
        raise LemonError(
            f"{path} does not match this train split ({len(rows)} scored rows, {len(split)} pairs, "
            "or different texts): score the same --dataset / --noise_type / --noise_level / "
            "--data_seed you train on."
        )
    if not 1 <= top_n <= len(rows):
        raise LemonError(f"--keep_top_n must be in [1, {len(rows)}], got {top_n}.")
    order = np.lexsort((idx, rows["score"].to_numpy(np.float64)))  # lowest score first, ties by idx
    return split.subset(np.sort(idx[order[:top_n]]))


def load_training_pairs(cfg: TrainConfig):
    """The (noisy, optionally filtered) split to train on, and its texts."""
    from lemon.data import DATASETS
    from lemon.data.loading import load_splits
    from lemon.noise import apply_noise

    options = cfg.data_options
    dataset = DATASETS.get(cfg.dataset)(options)
    if dataset.precomputed:
        raise LemonError(
            f"--dataset {cfg.dataset} holds embeddings, not images: nothing to train a CLIP on."
        )
    splits = load_splits(dataset)
    if cfg.noise_level > 0:
        splits = apply_noise(
            splits, cfg.noise_type or dataset.noise_types[0], cfg.noise_level, cfg.data_seed
        )
    if cfg.split not in splits.splits:
        raise LemonError(f"Unknown split '{cfg.split}'. Available: {', '.join(splits.splits)}.")
    split = splits[cfg.split]
    texts = split.prompts(options.prompt)
    if cfg.filter_scores is not None:
        assert cfg.keep_top_n is not None  # TrainConfig.validate: the two flags go together
        split = keep_cleanest(split, cfg.filter_scores, cfg.keep_top_n, texts)
        texts = split.prompts(options.prompt)
    return split, texts
