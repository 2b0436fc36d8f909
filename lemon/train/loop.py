"""The contrastive training loop behind :func:`lemon.train.train_clip`: seeded, resumable, with progress.

Initial weights come from ``torch.manual_seed(seed)`` inside a forked RNG (the caller's global state is
untouched); epoch e shuffles with its own generator seeded by (seed, e), so a resumed run sees the same
batches as an uninterrupted one. ``train_state.pt`` (model, optimiser, step, losses, settings) is written
atomically after each epoch. Progress: a tqdm bar on a terminal; otherwise (a log file, nohup, Slurm) a
line per epoch with the loss and pairs/s, and one every ``PROGRESS_EVERY_S`` within a long epoch.
"""

from __future__ import annotations

import io as _io
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lemon.core import io
from lemon.core.errors import LemonError

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"
#: settings that may change between an interrupted run and its resumption
RESUMABLE = ("output_dir", "epochs", "num_workers", "device", "resume")
#: seconds between progress lines within an epoch when stdout is not a terminal
PROGRESS_EVERY_S = 60.0


class _Indexed:
    """Training items: (preprocessed image, row index) so a batch can pick its token rows."""

    def __init__(self, source: Any, transform: Any) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        return self.transform(self.source[i]), i


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on gains, biases, embeddings and the logit scale (as CLIP training does)."""
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith("bias")
        (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 0 at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def contrastive_loss(image, text, logit_scale, caption_ids=None):
    """CLIP's symmetric InfoNCE loss over a batch of unit embeddings (B, d).

    With ``caption_ids`` (B,), pairs whose captions are identical (classification prompts: every image of
    a class has the same text) are not negatives of each other: those logits are masked out of both
    softmaxes, so the loss never pushes an image away from its own class's prompt.
    """
    import torch
    import torch.nn.functional as F

    logits = logit_scale * image @ text.T
    if caption_ids is not None:
        same = caption_ids[:, None] == caption_ids[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _settings(cfg) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE}


def run_training(
    cfg, model_cfg: dict[str, Any], split, texts: list[str], out: Path, desc: str = ""
):
    """Train ``model_cfg`` on (split.images, texts); returns (model, mean loss per epoch).

    ``desc`` prefixes the progress lines (e.g. 'fold 2/5 ')."""
    import numpy as np
    import open_clip
    import torch
    from open_clip.tokenizer import HFTokenizer
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from lemon.core.device import resolve_device
    from lemon.train.models import build_model, preprocess_config

    device = resolve_device(cfg.device)
    cuda = device.startswith("cuda")
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cuda and cfg.precision in ("auto", "bf16")
        else None
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(model_cfg).to(device)
    text_cfg = model_cfg.get("text_cfg", {})
    tokenizer = open_clip.SimpleTokenizer(context_length=text_cfg.get("context_length", 77))
    if text_cfg.get("hf_tokenizer_name"):
        tokenizer = HFTokenizer(
            text_cfg["hf_tokenizer_name"], context_length=text_cfg.get("context_length")
        )
    tokens = tokenizer(texts)
    transform = image_transform_v2(PreprocessCfg(**preprocess_config(model_cfg)), is_train=False)
    n = len(texts)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = n // batch
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, total))
    loss_fn = open_clip.ClipLoss()
    caption_ids = None
    if cfg.mask_identical_captions:
        caption_ids = torch.as_tensor(np.unique(np.asarray(texts), return_inverse=True)[1].ravel())
    start_epoch, history = 0, []
    state_path = out / STATE_FILE
    if state_path.is_file() and cfg.resume:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["settings"] != _settings(cfg):
            diff = sorted(
                k for k in _settings(cfg) if state["settings"].get(k) != _settings(cfg)[k]
            )
            raise LemonError(
                f"{out} holds a training state with other settings ({', '.join(diff)}); use another "
                "--output_dir, or --no_resume to start over."
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, history = state["epoch"], state["history"]
        log.info("resuming %s from epoch %d", out, start_epoch)
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        order = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        loader: DataLoader[Any] = DataLoader(
            _Indexed(split.images, transform),  # type: ignore[arg-type]  # map-style; torch types it Dataset
            batch_size=batch,
            shuffle=True,
            generator=order,
            drop_last=True,
            num_workers=cfg.num_workers if n > batch else 0,
            pin_memory=cuda,
        )
        total_loss = 0.0
        where = f"{desc}epoch {epoch + 1}/{cfg.epochs}"
        bar = tqdm(loader, desc=where, unit="batch", leave=False, disable=None)
        started = last_line = time.time()
        for step, (pixels, idx) in enumerate(bar, start=1):
            with amp if amp is not None else torch.autocast("cpu", enabled=False):
                out_ = model(
                    pixels.to(device, non_blocking=True), tokens[idx].to(device, non_blocking=True)
                )
                if caption_ids is None:
                    loss = loss_fn(
                        out_["image_features"], out_["text_features"], out_["logit_scale"]
                    )
                else:
                    loss = contrastive_loss(
                        out_["image_features"],
                        out_["text_features"],
                        out_["logit_scale"],
                        caption_ids[idx].to(device),
                    )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            total_loss += float(loss.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if bar.disable and time.time() - last_line >= PROGRESS_EVERY_S:
                last_line = time.time()
                log.info(
                    "%s: batch %d/%d, loss %.4f, %.0f pairs/s",
                    where,
                    step,
                    steps_per_epoch,
                    total_loss / step,
                    step * batch / (last_line - started),
                )
        history.append(total_loss / max(1, steps_per_epoch))
        seconds = time.time() - started
        log.info(
            "%s: loss %.4f, %.0f pairs/s, %.1f s",
            where,
            history[-1],
            steps_per_epoch * batch / max(seconds, 1e-9),
            seconds,
        )
        buf = _io.BytesIO()
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "settings": _settings(cfg),
            },
            buf,
        )
        io.atomic_write_bytes(state_path, buf.getvalue())
    model.eval()
    return model, history
