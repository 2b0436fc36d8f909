"""BLIP baselines: ``blip_itm`` (image-text matching) and ``blip_capfilt`` (CapFilt's filter).

``blip_itm``: transformers ``BlipForImageTextRetrieval`` (``--blip_model``, default the original's
Salesforce/blip-itm-base-coco) on each (image, observed text). ``--blip_mode itm`` (default): score =
1 - p(match), p(match) = softmax of the ITM head's two logits, column 1. ``itc``: score = 1 - cosine of the
contrastive heads' image and text features (cheaper, no cross-attention).

``blip_capfilt``: in the original, CapFilt *is* BLIP's filter — the COCO-finetuned ITM head judging each
given text on its own; no captioner runs (BLIP's captioner only adds synthetic captions, which the filter then
judges the same way). ``--capfilt_mode filter`` (default) is that: score = 1 - p(match), the same number
as ``blip_itm``. ``caption_gap`` is our documented extension that does run the captioner
(``--blip_captioner``, BlipForConditionalGeneration): it writes a caption c for the image and score =
p(match | image, c) - p(match | image, given text), in [-1, 1]: a text that matches far worse than the model's
own caption is suspect.

Texts are tokenised with truncation at the tokenizer's own maximum, as the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lemon.scorers.base import ScorerOptions, option
from lemon.scorers.hf import (
    check_vocabulary,
    inference,
    load_checked,
    model_identity,
)
from lemon.scorers.pairs import PairModelOptions, PairModelScorer
from lemon.scorers.registry import SCORERS

CAPTION_MAX_NEW_TOKENS = 30
#: the original's checkpoints
DEFAULT_BLIP_ITM = "Salesforce/blip-itm-base-coco"
DEFAULT_BLIP_CAPTIONER = "Salesforce/blip-image-captioning-base"
#: blip_itm: p(match) of the ITM head, or the cosine of the contrastive (ITC) heads
BLIP_MODES: tuple[str, ...] = ("itm", "itc")
#: blip_capfilt: the original's filter (ITM on the given text), or the captioner-gap extension
CAPFILT_MODES: tuple[str, ...] = ("filter", "caption_gap")


@dataclass(frozen=True)
class BlipOptions(PairModelOptions):
    """The BLIP checkpoint both BLIP scorers read."""

    blip_model: str = option(
        DEFAULT_BLIP_ITM,
        "BLIP image-text matching checkpoint of blip_itm and blip_capfilt (Hub id or folder).",
    )


@dataclass(frozen=True)
class BlipItmOptions(BlipOptions):
    """blip_itm's options."""

    blip_mode: str = option("itm", "blip_itm: ITM head probability, or ITC cosine.", BLIP_MODES)


@dataclass(frozen=True)
class BlipCapFiltOptions(BlipOptions):
    """blip_capfilt's options."""

    capfilt_mode: str = option(
        "filter",
        "blip_capfilt: the original's filter (ITM on the given text), or caption_gap (runs "
        "--blip_captioner and compares its caption's match with the given text's).",
        CAPFILT_MODES,
    )
    blip_captioner: str = option(
        DEFAULT_BLIP_CAPTIONER, "BLIP captioner of --capfilt_mode caption_gap."
    )


class _Blip:
    """A loaded BLIP retrieval model and processor: p(match) or ITC cosine per (image, text)."""

    def __init__(self, source: str, scorer: str, flag: str, device: str, precision: str) -> None:
        from transformers import AutoProcessor, BlipForImageTextRetrieval

        model, self.processor = load_checked(
            BlipForImageTextRetrieval, AutoProcessor, source, scorer, flag, precision
        )
        check_vocabulary(self.processor.tokenizer, model.config.text_config.vocab_size, source)
        self.model = model.to(device).eval()
        self.device, self.precision = device, precision

    def match(self, images: list, texts: list[str], mode: str = "itm") -> np.ndarray:
        """(b,) p(match) ('itm') or image-text cosine ('itc') of each (image_i, text_i)."""
        import torch

        enc = self.processor(
            images=images, text=texts, padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        with inference(self.device, self.precision):
            out = self.model(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                pixel_values=enc["pixel_values"].to(self.model.dtype),
                use_itm_head=mode == "itm",
            ).itm_score.float()
        # itm: (b, 2) logits, column 1 = match; itc: (b, b) image x text cosines, pairs on the diagonal
        values = torch.softmax(out, dim=-1)[:, 1] if mode == "itm" else torch.diagonal(out)
        return values.cpu().numpy().astype(np.float64)


@SCORERS.register("blip_itm")
class BlipItmScorer(PairModelScorer):
    """1 - BLIP's image-text matching probability (or 1 - ITC cosine with --blip_mode itc)."""

    Options = BlipItmOptions
    options: BlipItmOptions
    default_batch_size: ClassVar[int] = 32

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        self.columns = ("score", "p_match" if self.options.blip_mode == "itm" else "itc_cosine")

    def identity(self) -> tuple[str, str]:
        return model_identity(self.options.blip_model), f"mode={self.options.blip_mode}"

    def load(self) -> None:
        self.blip = _Blip(
            self.options.blip_model, self.name, "--blip_model", self.device, self.precision
        )

    def score_batch(self, images: list, texts: list[str]) -> np.ndarray:
        p = self.blip.match(images, list(texts), self.options.blip_mode)
        return np.stack([1.0 - p, p], axis=1)


@SCORERS.register("blip_capfilt")
class BlipCapFiltScorer(PairModelScorer):
    """CapFilt's filter on the given text (the original), or the captioner gap (--capfilt_mode caption_gap)."""

    Options = BlipCapFiltOptions
    options: BlipCapFiltOptions
    default_batch_size: ClassVar[int] = 32

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        gap = self.options.capfilt_mode == "caption_gap"
        self.columns = ("score", "p_match", "p_match_caption") if gap else ("score", "p_match")

    def identity(self) -> tuple[str, str]:
        ids = model_identity(self.options.blip_model)
        if self.options.capfilt_mode == "caption_gap":
            ids += "+" + model_identity(self.options.blip_captioner)
        settings = f"mode={self.options.capfilt_mode}/max_new_tokens={CAPTION_MAX_NEW_TOKENS}"
        return ids, settings

    def load(self) -> None:
        self.blip = _Blip(
            self.options.blip_model, self.name, "--blip_model", self.device, self.precision
        )
        if self.options.capfilt_mode == "caption_gap":
            self._load_captioner()

    def _load_captioner(self) -> None:
        from transformers import AutoProcessor, BlipForConditionalGeneration

        source = self.options.blip_captioner
        model, self.cap_processor = load_checked(
            BlipForConditionalGeneration,
            AutoProcessor,
            source,
            self.name,
            "--blip_captioner",
            self.precision,
            labels=("captioner", "captioner processor"),
        )
        check_vocabulary(self.cap_processor.tokenizer, model.config.text_config.vocab_size, source)
        self.captioner = model.to(self.device).eval()

    def captions(self, images: list) -> list[str]:
        """Greedy BLIP captions of the images."""
        enc = self.cap_processor(images=images, return_tensors="pt").to(self.device)
        with inference(self.device, self.precision):
            ids = self.captioner.generate(
                pixel_values=enc["pixel_values"].to(self.captioner.dtype),
                max_new_tokens=CAPTION_MAX_NEW_TOKENS,
                do_sample=False,
            )
        return [t.strip() for t in self.cap_processor.batch_decode(ids, skip_special_tokens=True)]

    def score_batch(self, images: list, texts: list[str]) -> np.ndarray:
        p_given = self.blip.match(images, list(texts))
        if self.options.capfilt_mode == "filter":
            return np.stack([1.0 - p_given, p_given], axis=1)
        p_caption = self.blip.match(images, self.captions(images))
        return np.stack([p_caption - p_given, p_given, p_caption], axis=1)

    def fit(self, ctx: Any) -> dict[str, Any]:
        return {**super().fit(ctx), "capfilt_mode": self.options.capfilt_mode}
