"""The contrastive training loop behind :func:`lemon.train.train_clip`: seeded, resumable, tqdm.

Initial weights come from ``torch.manual_seed(seed)`` inside a forked RNG (the caller's global state is
untouched); epoch e shuffles with its own generator seeded by (seed, e), so a resumed run sees the same
batches as an uninterrupted one. ``train_state.pt`` (model, optimiser, step, losses, settings) is written
atomically after each epoch.
"""

from __future__ import annotations

import io as _io
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lemon import io
from lemon.errors import LemonError

log = logging.getLogger(__name__)
STATE_FILE = "train_state.pt"
#: settings that may change between an interrupted run and its resumption
RESUMABLE = ("output_dir", "epochs", "num_workers", "device", "resume")


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
    decay, no_decay = [], []
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


def _settings(cfg) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE}


def run_training(cfg, model_cfg: dict[str, Any], split, texts: list[str], out: Path):
    """Train ``model_cfg`` on (split.images, texts); returns (model, mean loss per epoch)."""
    import open_clip
    import torch
    from open_clip.tokenizer import HFTokenizer
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from lemon.device import resolve_device
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
        loader = DataLoader(
            _Indexed(split.images, transform),
            batch_size=batch,
            shuffle=True,
            generator=order,
            drop_last=True,
            num_workers=cfg.num_workers if n > batch else 0,
            pin_memory=cuda,
        )
        total_loss = 0.0
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, disable=None
        )
        for pixels, idx in bar:
            with amp if amp is not None else torch.autocast("cpu", enabled=False):
                out_ = model(
                    pixels.to(device, non_blocking=True), tokens[idx].to(device, non_blocking=True)
                )
                loss = loss_fn(out_["image_features"], out_["text_features"], out_["logit_scale"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            total_loss += float(loss.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        history.append(total_loss / max(1, steps_per_epoch))
        log.info("epoch %d/%d: mean loss %.4f", epoch + 1, cfg.epochs, history[-1])
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
