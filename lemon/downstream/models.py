"""The downstream models: a classifier on the filtered noisy labels (accuracy on the clean test labels), or a
CLIP trained from scratch on the filtered pairs (zero-shot retrieval recall on the clean test captions)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lemon.data.base import ImageSource, PairSplit
from lemon.downstream.config import DownstreamConfig

log = logging.getLogger(__name__)
RECALL_AT = (1, 5, 10)


def classify(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c: float,
    seed: int,
) -> dict[str, float]:
    """Multinomial logistic regression (scikit-learn, L2 strength 1/c) on the train image embeddings and
    their observed labels; accuracy and macro F1 on the clean test labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(np.asarray(train_x, dtype=np.float64), np.asarray(train_y, dtype=np.int64))
    pred = model.predict(np.asarray(test_x, dtype=np.float64))
    return {
        "test/accuracy": float(accuracy_score(test_y, pred)),
        "test/macro_f1": float(f1_score(test_y, pred, average="macro")),
    }


def retrieval_recall(
    image_emb: np.ndarray, text_emb: np.ndarray, caption_of_image: np.ndarray
) -> dict[str, float]:
    """Zero-shot retrieval recall@1/5/10 between n test images and their u distinct clean captions.

    image_emb (n, d) and text_emb (u, d) unit rows; caption_of_image (n,) the caption row of each image.
    Image -> text: the image's own caption is among the k most similar captions. Text -> image: one of the
    caption's images is among the k most similar images (captions repeat, e.g. templated ones). Ties
    count in favour.
    """
    sim = np.asarray(image_emb, dtype=np.float64) @ np.asarray(text_emb, dtype=np.float64).T
    rows = np.arange(len(sim))
    own = sim[rows, caption_of_image]
    rank_i2t = (sim > own[:, None]).sum(axis=1)
    best_image = np.full(sim.shape[1], -np.inf)
    np.maximum.at(best_image, caption_of_image, own)
    rank_t2i = (sim > best_image[None, :]).sum(axis=0)
    out = {}
    for k in RECALL_AT:
        out[f"test/i2t_R@{k}"] = float(np.mean(rank_i2t < k))
        out[f"test/t2i_R@{k}"] = float(np.mean(rank_t2i < k))
    out["test/R_mean"] = float(np.mean([out[key] for key in out]))
    return out


def train_clip_and_retrieve(
    train_images: ImageSource,
    train_texts: list[str],
    test_images: ImageSource,
    test_captions: np.ndarray,
    cfg: DownstreamConfig,
    folder: Path,
) -> dict[str, Any]:
    """Train a CLIP from scratch (lemon.train) on the kept pairs, then measure test retrieval recall."""
    from lemon.data.features import normalize_rows
    from lemon.embed import build_embedder
    from lemon.embed.batching import embed_images, embed_texts
    from lemon.train import TrainConfig
    from lemon.train.loop import run_training
    from lemon.train.models import model_config, save_open_clip

    start = time.time()
    train_cfg = TrainConfig(
        output_dir=str(folder),
        model=cfg.train_model,
        epochs=cfg.train_epochs,
        batch_size=cfg.train_batch_size,
        lr=cfg.train_lr,
        seed=cfg.train_seed,
        num_workers=cfg.num_workers,
        device=cfg.device,
        precision=cfg.precision,
    )
    texts = np.asarray(train_texts, dtype=object)
    pairs = PairSplit("train", "captioning", train_images, texts, texts)
    model_cfg = model_config(cfg.train_model)
    folder.mkdir(parents=True, exist_ok=True)
    model, history = run_training(train_cfg, model_cfg, pairs, list(texts), folder)
    save_open_clip(model, model_cfg, folder)
    trained_s = time.time() - start
    embedder = build_embedder(str(folder), device=str(next(model.parameters()).device))
    captions, caption_of_image = np.unique(
        np.asarray(test_captions, dtype=str), return_inverse=True
    )
    image_emb = normalize_rows(
        embed_images(embedder, test_images, 256, cfg.num_workers, "test images"), "test images"
    )
    text_emb = normalize_rows(
        embed_texts(embedder, list(captions), 256, "test captions"), "captions"
    )
    log.info("trained on %d pairs in %.0f s; final loss %.4f", len(texts), trained_s, history[-1])
    return {
        **retrieval_recall(image_emb, text_emb, caption_of_image),
        "train/final_loss": float(history[-1]),
        "time/train_s": trained_s,
    }
