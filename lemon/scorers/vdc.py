"""``vdc``: Visual Data Cleaning (Zhu et al., ICLR 2024), as the original LEMoN code runs it.

1. Question writing: an LLM (``--vdc_llm``, default Llama-3.1-8B-Instruct) is asked for ``--vdc_questions``
   visual questions about the given caption (captioning) or class name (classification) that a model would
   answer "yes" to if the text is right; each distinct text is asked once.
2. Answering: a VQA model (``--vdc_vqa``, default InstructBLIP-vicuna-7b; any LLaVA-style model works too)
   answers, per pair, two common questions ("Describe the image in detail.", ...) and the specific ones.
3. Judging: the LLM judges whether each description and the given text refer to the same object; a
   specific answer is consistent when it says "yes" (as a whole word).
score = the fraction of the pair's questions judged inconsistent (higher = more likely mislabelled).

Unlike the original: the caption and label templates are the right way round (the original swapped them),
prompts go through each model's own chat template (no doubled BOS), "eyes" does not count as "yes", the judge
reads p(yes) vs p(no) from one forward pass (``--vdc_judge generate``: the original's two generated tokens),
and every (pair, question) is batched. Answers to the specific questions stop after 16 tokens (only "yes"
is looked for); descriptions after ``--vdc_answer_tokens``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lemon.scorers.base import ScoringContext, option
from lemon.scorers.hf import (
    answer_token_ids,
    check_vocabulary,
    inference,
    load_checked,
    model_identity,
    new_tokens,
)
from lemon.scorers.llava import load_image_text_model
from lemon.scorers.pairs import PairModelOptions, PairModelScorer, image_batches
from lemon.scorers.registry import SCORERS

#: the LLM writing the questions and judging, and the visual question answering model
DEFAULT_VDC_LLM = "meta-llama/Llama-3.1-8B-Instruct"
DEFAULT_VDC_VQA = "Salesforce/instructblip-vicuna-7b"
#: the judge reads p(yes) vs p(no) from one forward pass, or generates (the original)
VDC_JUDGES: tuple[str, ...] = ("logits", "generate")

COMMON_QUESTIONS = (
    "Describe the image in detail.",
    "Provide a detailed description of the given image.",
)
SYSTEM = "You are a helpful assistant"
_ASK = (
    "Please generate some visual questions to ask a multimodal large language model to identify if the "
    "{what} of an image is correct. These questions will help determine if {target} corresponds to the "
    'given {what}.\nRemember that the goal is to ask visual questions that would lead to a "yes" answer if '
    'the {what} is correct.\nFor example, if the {what} is "{example}", the possible questions could '
    "be:\n{examples}\n\nYou should generate {n} most insightful questions, separated by new lines.\n"
    'The {what} is "{text}".'
)
TEMPLATES = {
    "captioning": dict(
        what="caption",
        target="the image",
        example="A boy in red shirt playing ball",
        examples="Is there a boy in the picture?\nIs the boy wearing a red shirt?\nIs the ball "
        "clearly visible in the scene?\nIs the boy interacting with the ball, such as kicking, "
        "throwing, or holding it?",
    ),
    "classification": dict(
        what="label",
        target="the object in the image",
        example="airplane",
        examples="Does the image contain an airplane?\nIs there an airplane in the image?\nCan the "
        "object in the image be used to fly in the air?\nDoes the object in the image have wings?",
    ),
}
JUDGE = (
    "Assume you are a helpful and precise assistant for evaluation. Please judge whether the 'Caption' "
    "of an image and one of the 'Labels' refer to the same object. Answer with yes or no.\n"
    "- Caption: [{response}]\n- Labels: [{answer}]"
)
FALLBACK_QUESTION = 'Does this image match the description "{text}"?'
SPECIFIC_ANSWER_TOKENS = 16
MAX_QUESTION_CHARS = 400  # an LLM line can run on; InstructBLIP's Q-Former reads 512 positions
_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|q\d*[:.)])\s*", re.I)


def parse_questions(reply: str, n: int) -> list[str]:
    """Up to ``n`` questions of an LLM reply: non-empty lines without list markers, preferring lines
    that end in '?'."""
    lines = [_MARKER.sub("", line).strip() for line in reply.split("\n")]
    lines = [line for line in lines if line]
    asked = [line for line in lines if line.endswith("?")]
    return (asked or lines)[:n]


def says_yes(answer: str) -> bool:
    """Whether ``answer`` contains the word 'yes' (whole word; the original matched substrings)."""
    return "yes" in re.findall(r"[a-z]+", answer.lower())


class _ChatLM:
    """A chat LLM: writes the questions and judges the descriptions."""

    def __init__(self, source: str, scorer: str, device: str, precision: str, batch: int) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model, self.tok = load_checked(
            AutoModelForCausalLM,
            AutoTokenizer,
            source,
            scorer,
            "--vdc_llm",
            precision,
            labels=("LLM", "LLM tokenizer"),
        )
        check_vocabulary(self.tok, model.config.vocab_size, source, slack=256)
        self.model = model.to(device).eval()
        self.device, self.precision, self.batch = device, precision, batch
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.yes_ids = answer_token_ids(self.tok, "yes")
        self.no_ids = answer_token_ids(self.tok, "no")

    def _encode(self, users: list[str]):
        prompts = [
            self.tok.apply_chat_template(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for u in users
        ]
        # the chat template starts with BOS already: no second one
        return self.tok(prompts, padding=True, add_special_tokens=False, return_tensors="pt").to(
            self.device
        )

    def generate(self, users: list[str], max_new_tokens: int) -> list[str]:
        out: list[str] = []
        for start in range(0, len(users), self.batch):
            enc = self._encode(users[start : start + self.batch])
            with inference(self.device, self.precision):
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tok.pad_token_id,
                )
            out += self.tok.batch_decode(
                new_tokens(ids, enc["input_ids"]), skip_special_tokens=True
            )
        return out

    def says_yes(self, users: list[str]) -> np.ndarray:
        """p(yes) > p(no) at the first answer token, one forward pass per batch."""
        import torch

        out = np.zeros(len(users), dtype=bool)
        for start in range(0, len(users), self.batch):
            enc = self._encode(users[start : start + self.batch])
            with inference(self.device, self.precision):
                logits = self.model(**enc, logits_to_keep=1).logits[:, -1].float()
            p = torch.softmax(logits, -1)
            yes, no = p[:, self.yes_ids].sum(-1), p[:, self.no_ids].sum(-1)
            out[start : start + len(enc["input_ids"])] = (yes > no).cpu().numpy()
        return out


@dataclass(frozen=True)
class VdcOptions(PairModelOptions):
    """vdc's options."""

    vdc_llm: str = option(DEFAULT_VDC_LLM, "vdc: the LLM writing the questions and judging.")
    vdc_vqa: str = option(DEFAULT_VDC_VQA, "vdc: the visual question answering model.")
    vdc_questions: int = option(6, "vdc: specific questions per text.")
    vdc_judge: str = option(
        "logits", "vdc: judge by p(yes) vs p(no), or generate (original).", VDC_JUDGES
    )
    vdc_question_tokens: int = option(512, "vdc: most tokens the LLM writes per question list.")
    vdc_answer_tokens: int = option(128, "vdc: most tokens of the VQA model's image descriptions.")

    def validate(self) -> None:
        super().validate()
        self.at_least("vdc_questions", 0)
        self.at_least("vdc_question_tokens", 1)
        self.at_least("vdc_answer_tokens", 1)


@SCORERS.register("vdc")
class VdcScorer(PairModelScorer):
    """The fraction of a pair's visual questions whose answers are inconsistent with its text."""

    Options = VdcOptions
    options: VdcOptions

    columns: tuple[str, ...] = ("score", "n_questions", "n_consistent")
    default_batch_size: ClassVar[int] = 16

    def identity(self) -> tuple[str, str]:
        o = self.options
        ids = f"{model_identity(o.vdc_llm)}+{model_identity(o.vdc_vqa)}"
        settings = (
            f"task={getattr(self, 'task', '')}/q={o.vdc_questions}/judge={o.vdc_judge}/"
            f"qtok={o.vdc_question_tokens}/atok={o.vdc_answer_tokens}/v1"
        )
        return ids, settings

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        self.task = ctx.features.task
        return super().fit(ctx)

    def texts(self, ctx: ScoringContext, q: Any) -> list[str]:
        """The caption, or for classification the class name (as the original), not the prompt."""
        self.task = ctx.features.task
        if self.task == "classification" and ctx.features.class_names is not None:
            names = np.asarray(ctx.features.class_names, dtype=object)
            return [str(t) for t in names[q.observed.astype(np.int64)]]
        return [str(t) for t in q.texts]

    def load(self) -> None:
        o = self.options
        self.llm = _ChatLM(o.vdc_llm, self.name, self.device, self.precision, self.batch_size)
        self.vqa, self.vqa_processor = load_image_text_model(
            o.vdc_vqa, self.name, "--vdc_vqa", self.device, self.precision
        )
        # InstructBLIP / BLIP-2 read the bare question; chat models get it in their template
        self.plain = type(self.vqa).__name__.startswith(("InstructBlip", "Blip2"))

    def questions(self, texts: list[str]) -> dict[str, list[str]]:
        """Specific questions of each distinct text, written by the LLM once per text."""
        distinct = sorted(set(texts))
        n = self.options.vdc_questions
        if n == 0:
            return {t: [] for t in distinct}
        template = _ASK.format(n=n, text="{text}", **TEMPLATES[self.task])
        replies = self.llm.generate(
            [template.replace("{text}", t) for t in distinct], self.options.vdc_question_tokens
        )
        return {
            t: parse_questions(r, n) or [FALLBACK_QUESTION.format(text=t)]
            for t, r in zip(distinct, replies)
        }

    def answer(self, images: list, questions: list[str], max_new_tokens: int) -> list[str]:
        """The VQA model's answers, one per (image, question)."""
        out: list[str] = []
        tok = self.vqa_processor.tokenizer
        for start in range(0, len(questions), self.batch_size):
            qs = [q[:MAX_QUESTION_CHARS] for q in questions[start : start + self.batch_size]]
            if not self.plain:
                qs = [
                    self.vqa_processor.apply_chat_template(
                        [
                            {
                                "role": "user",
                                "content": [{"type": "image"}, {"type": "text", "text": q}],
                            }
                        ],
                        add_generation_prompt=True,
                    )
                    for q in qs
                ]
            enc = self.vqa_processor(
                images=images[start : start + self.batch_size],
                text=qs,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            enc["pixel_values"] = enc["pixel_values"].to(self.vqa.dtype)
            with inference(self.device, self.precision):
                ids = self.vqa.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    min_length=1,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                )
            out += [
                a.strip()
                for a in tok.batch_decode(
                    new_tokens(ids, enc["input_ids"]), skip_special_tokens=True
                )
            ]
        return out

    def compute(self, images: Any, texts: list[str]) -> np.ndarray:
        self._ensure_loaded()
        specific = self.questions(texts)
        n_q = np.zeros(len(texts))
        n_ok = np.zeros(len(texts))
        for rows, batch in image_batches(images, self.batch_size, self.options.num_workers):
            pair_texts = texts[rows]
            # the common questions of every pair of the batch, then its specific ones
            owners = np.repeat(np.arange(len(batch)), len(COMMON_QUESTIONS))
            described = self.answer(
                [batch[i] for i in owners],
                list(COMMON_QUESTIONS) * len(batch),
                self.options.vdc_answer_tokens,
            )
            judged = [
                JUDGE.format(response=a, answer=pair_texts[i]) for a, i in zip(described, owners)
            ]
            if self.options.vdc_judge == "logits":
                ok = self.llm.says_yes(judged)
            else:
                ok = np.array(["yes" in r.lower() for r in self.llm.generate(judged, 2)])
            asked = [specific[t] for t in pair_texts]
            spec_owner = np.repeat(np.arange(len(batch)), [len(a) for a in asked])
            answers = self.answer(
                [batch[i] for i in spec_owner],
                [q for a in asked for q in a],
                SPECIFIC_ANSWER_TOKENS,
            )
            spec_ok = np.array([says_yes(a) for a in answers], dtype=bool)
            owner = np.concatenate([owners, spec_owner]).astype(np.int64)
            consistent = np.concatenate([ok, spec_ok]).astype(np.float64)
            n_q[rows] = np.bincount(owner, minlength=len(batch))
            n_ok[rows] = np.bincount(owner, weights=consistent, minlength=len(batch))
        return np.stack([1.0 - n_ok / np.clip(n_q, 1, None), n_q, n_ok], axis=1)
