"""``llava``: ask a LLaVA model whether the text describes the image; score = 1 - p("Yes").

As the original (its checkpoint is LLaVA-NeXT, liuhaotian/llava-v1.6-vicuna-13b; here its transformers port
llava-hf/llava-v1.6-vicuna-13b-hf, ``--llava_model``; any image-text-to-text LLaVA checkpoint loads through
``AutoModelForImageTextToText``): the original's query in the Vicuna v1 conversation it used,
``<system> USER: <image>\\n<query> ASSISTANT:``.

Instead of the original's one pair at a time with 512 generated tokens, each batch is one forward pass plus
one cached decoding step (left-padded, fp16 weights on CUDA). The answer position is the first generated
token that is not blank (LLaVA may emit a lone '▁' first; the original skipped the first token for that).
``--llava_answer yes_no`` (default): score = 1 - p_yes / (p_yes + p_no), the probabilities summed over every
single-token spelling of yes / no (continuous; no ties, no unparsable answers). ``original``: the original's
rule on the greedy answer token: its probability p, score = p when it says no, else 1 - p.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lemon.core.errors import ModelNotFoundError
from lemon.scorers.base import option
from lemon.scorers.hf import (
    answer_token_ids,
    check_vocabulary,
    inference,
    load_checked,
    model_identity,
)
from lemon.scorers.pairs import PairModelOptions, PairModelScorer
from lemon.scorers.registry import SCORERS

#: the original's LLaVA-NeXT, through its transformers port
DEFAULT_LLAVA = "llava-hf/llava-v1.6-vicuna-13b-hf"
#: 1 - p(yes) / (p(yes) + p(no)) at the answer token, or the original's rule on the greedy token
LLAVA_ANSWERS: tuple[str, ...] = ("yes_no", "original")

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
QUERY = (
    'The proposed caption for this image is "{text}". Is this caption correct? '
    'Only answer with "Yes" or "No".'
)
#: the LLaVA repository's conv_templates['llava_v1'] rendered for one user turn
PROMPT = VICUNA_SYSTEM + " USER: <image>\n{query} ASSISTANT:"


def load_image_text_model(source: str, scorer: str, flag: str, device: str, precision: str):
    """(model, processor) of an image-text-to-text checkpoint (LLaVA, LLaVA-NeXT, InstructBLIP, ...),
    offline-safe, checked complete; the tokenizer pads on the left (the answer is then the last position)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = load_checked(
        AutoModelForImageTextToText, AutoProcessor, source, scorer, flag, precision
    )
    tok = processor.tokenizer
    check_vocabulary(tok, model.config.get_text_config().vocab_size, source, slack=256)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    return model.to(device).eval(), processor


@dataclass(frozen=True)
class LlavaOptions(PairModelOptions):
    """llava's options."""

    llava_model: str = option(
        DEFAULT_LLAVA, "LLaVA checkpoint of llava (any image-text-to-text LLaVA)."
    )
    llava_answer: str = option(
        "yes_no",
        "llava: 1 - p(yes)/(p(yes)+p(no)), or the original's rule on the greedy answer.",
        LLAVA_ANSWERS,
    )


@SCORERS.register("llava")
class LlavaScorer(PairModelScorer):
    """1 - p(yes) of a LLaVA model asked whether the caption is correct."""

    Options = LlavaOptions
    options: LlavaOptions

    columns: tuple[str, ...] = ("score", "p_yes", "p_no")
    default_batch_size: ClassVar[int] = 8

    def identity(self) -> tuple[str, str]:
        return model_identity(self.options.llava_model), f"answer={self.options.llava_answer}/v1"

    def load(self) -> None:
        self.model, self.processor = load_image_text_model(
            self.options.llava_model, self.name, "--llava_model", self.device, self.precision
        )
        tok = self.processor.tokenizer
        self.yes_ids = answer_token_ids(tok, "yes")
        self.no_ids = answer_token_ids(tok, "no")
        if set(self.yes_ids) & set(self.no_ids):
            raise ModelNotFoundError(
                f"The tokenizer of '{self.options.llava_model}' spells 'yes' and 'no' with a "
                "shared token; p(yes) cannot be read from it."
            )
        vocab = self.model.config.get_text_config().vocab_size
        pieces = tok.convert_ids_to_tokens(list(range(min(vocab, len(tok)))))
        blank = [not tok.convert_tokens_to_string([p]).strip() for p in pieces]
        self.blank = np.array(blank + [False] * max(0, vocab - len(blank)))

    def score_batch(self, images: list, texts: list[str]) -> np.ndarray:
        import torch

        prompts = [PROMPT.format(query=QUERY.format(text=t)) for t in texts]
        enc = self.processor(images=images, text=prompts, padding=True, return_tensors="pt")
        enc = enc.to(self.device)
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(self.model.dtype)
        with inference(self.device, self.precision):
            out = self.model.generate(
                **enc,
                max_new_tokens=2,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=self.processor.tokenizer.pad_token_id,
            )
        steps = [torch.softmax(lg.float(), dim=-1).cpu() for lg in out.logits]  # each (b, V)
        first = steps[0].argmax(-1).numpy()
        second = steps[-1] if len(steps) > 1 else steps[0]
        use_second = torch.as_tensor(self.blank[first] & (len(steps) > 1))
        probs = torch.where(use_second[:, None], second, steps[0])
        p_yes = probs[:, self.yes_ids].sum(-1).numpy().astype(np.float64)
        p_no = probs[:, self.no_ids].sum(-1).numpy().astype(np.float64)
        if self.options.llava_answer == "yes_no":
            score = 1.0 - p_yes / np.clip(p_yes + p_no, 1e-12, None)
        else:
            chosen = probs.argmax(-1)
            p_top = probs.gather(1, chosen[:, None])[:, 0].numpy().astype(np.float64)
            score = np.where(np.isin(chosen.numpy(), self.no_ids), p_top, 1.0 - p_top)
        return np.stack([score, p_yes, p_no], axis=1)
