"""The scorer contract and the shared scoring context.

Every method — LEMoN and each baseline — is a :class:`Scorer`: ``fit`` picks hyper-parameters on val (a
no-op for parameter-free baselines) and ``score`` returns, for one split, a dict holding ``score``
(one value per sample, **higher = more likely mislabelled**) plus any named components worth writing to
scores.csv. The :class:`ScoringContext` owns the embedded features and memoises the neighbour searches, so
scorers that need the same kNN never recompute it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lemon.data.base import TASKS
from lemon.errors import LemonError
from lemon.features import Features, SplitFeatures
from lemon.methods import (
    DEFAULT_BLIP_CAPTIONER,
    DEFAULT_BLIP_ITM,
    DEFAULT_KNN_K,
    DEFAULT_LLAVA,
    DEFAULT_VDC_LLM,
    DEFAULT_VDC_VQA,
    DYNAMICS_BATCH_SIZE,
    DYNAMICS_EPOCHS,
    DYNAMICS_LR,
)

log = logging.getLogger(__name__)
SPACES = ("img", "txt")


@dataclass(frozen=True)
class ScorerOptions:
    """What a scorer needs to know of a run (never the whole run configuration).

    k : neighbours per query; dist_type : 'cosine' or 'euclidean' (squared)
    ablation, normalize_d1, use_discrete_for_text, legacy_discrete_weighting : LEMoN variants
    fixed : hyper-parameters given by the user (not selected)
    select : whether hyper-parameters may be selected on the val labels (False: LEMoN_FIX for the rest)
    temperature : softmax temperature of zero-shot class probabilities
    seed : seed of any search or stochastic fit
    search_budget : multiplies the hyper-parameter search's budget (LEMoN_OPT)
    blip_model, blip_mode, capfilt_mode, blip_captioner, llava_model, llava_answer, vdc_llm, vdc_vqa,
    vdc_questions, vdc_judge, vdc_question_tokens, vdc_answer_tokens : the model-based baselines'
    checkpoints (Hub ids or save_pretrained folders) and settings
    model_batch_size : their batch size (None: each scorer's own); num_workers : image decoding workers
    precision : 'auto' (fp16 on CUDA, fp32 on CPU), 'fp32', 'fp16' or 'bf16'
    cache_dir : the cache root their outputs are stored under (None: not cached)
    dynamics_epochs, dynamics_lr, dynamics_batch_size : training of aum / datamap's classifier head
    """

    k: int = DEFAULT_KNN_K
    dist_type: str = "cosine"
    ablation: str = "none"
    normalize_d1: bool = False
    use_discrete_for_text: bool = False
    legacy_discrete_weighting: bool = False
    fixed: Mapping[str, float] = field(default_factory=dict)
    select: bool = True
    temperature: float = 1.0
    seed: int = 0
    search_budget: float = 1.0
    blip_model: str = DEFAULT_BLIP_ITM
    blip_mode: str = "itm"
    capfilt_mode: str = "filter"
    blip_captioner: str = DEFAULT_BLIP_CAPTIONER
    llava_model: str = DEFAULT_LLAVA
    llava_answer: str = "yes_no"
    vdc_llm: str = DEFAULT_VDC_LLM
    vdc_vqa: str = DEFAULT_VDC_VQA
    vdc_questions: int = 6
    vdc_judge: str = "logits"
    vdc_question_tokens: int = 512
    vdc_answer_tokens: int = 128
    model_batch_size: int | None = None
    num_workers: int = 0
    precision: str = "auto"
    cache_dir: str | None = None
    dynamics_epochs: int = DYNAMICS_EPOCHS
    dynamics_lr: float = DYNAMICS_LR
    dynamics_batch_size: int = DYNAMICS_BATCH_SIZE


class ScoringContext:
    """Features of a run plus memoised kNN searches against the reference set."""

    def __init__(self, features: Features, knn_backend: str = "torch", device: str = "cpu") -> None:
        self.features = features
        self.knn_backend = knn_backend
        self.device = device
        self._knn: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._reference: SplitFeatures | None = None

    @property
    def reference(self) -> SplitFeatures:
        if self._reference is None:
            self._reference = self.features.reference
        return self._reference

    def split(self, name: str) -> SplitFeatures:
        return self.features.splits[name]

    def neighbours(self, split: str, space: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sim, idx), each (n, k): nearest reference pairs of ``split`` by image or text similarity."""
        from lemon.neighbors import knn

        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        key = (split, space, k)
        # a larger k already computed contains the answer (topk is sorted)
        for (s, sp, kk), (sim, idx) in self._knn.items():
            if s == split and sp == space and kk >= k:
                return sim[:, :k], idx[:, :k]
        query = getattr(self.split(split), space)
        exclude = self.features.self_rows(split)
        if self.features.fold_train is not None:
            self._knn[key] = self._fold_neighbours(split, space, k, exclude)
            return self._knn[key]
        ref = getattr(self.reference, space)
        log.debug(
            "kNN %s/%s k=%d: %d queries x %d reference", split, space, k, len(query), len(ref)
        )
        self._knn[key] = knn(
            query, ref, k, exclude=exclude, backend=self.knn_backend, device=self.device
        )
        return self._knn[key]

    def _fold_neighbours(
        self, split: str, space: str, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold search: the rows of fold f against the reference set as fold model f embeds it;
        ids index the stacked reference (:attr:`Features.reference`)."""
        from lemon.neighbors import knn

        q = self.split(split)
        query, fold = getattr(q, space), q.fold
        ref_rows = self.features.reference_index
        sim = np.zeros((len(q), k), dtype=np.float32)
        idx = np.zeros((len(q), k), dtype=np.int64)
        for f, view in enumerate(self.features.fold_train):
            rows = np.flatnonzero(fold == f)
            if not len(rows):
                continue
            s, i = knn(
                query[rows],
                getattr(view, space)[ref_rows],
                k,
                exclude=None if exclude is None else exclude[rows],
                backend=self.knn_backend,
                device=self.device,
            )
            sim[rows], idx[rows] = s, i + f * len(ref_rows)
        return sim, idx

    @contextlib.contextmanager
    def temporary_split(self, split: SplitFeatures) -> Iterator[str]:
        """Make ``split`` scorable under its name while the block runs; forget it and its searches after."""
        if split.split in self.features.splits:
            raise ValueError(f"split {split.split!r} already exists")
        self.features.splits[split.split] = split
        try:
            yield split.split
        finally:
            del self.features.splits[split.split]
            for key in [key for key in self._knn if key[0] == split.split]:
                del self._knn[key]


class Scorer:
    """Base class of registered scorers.

    ``name`` (set by the registry) and ``tasks`` (supported tasks) are class attributes. Subclasses
    implement ``score`` and, when they have hyper-parameters, ``fit``.
    """

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]] = TASKS
    #: runs a model on the images themselves (embeddings alone are not enough)
    needs_images: ClassVar[bool] = False
    #: works on out-of-fold features (each row from its own fold model; the reference set stacked)
    fold_models: ClassVar[bool] = False

    def __init__(self, options: ScorerOptions | None = None) -> None:
        self.options = options or ScorerOptions()

    def check(self, features: Features) -> None:
        """Refuse data this scorer cannot handle, with a clear message."""
        if features.task not in self.tasks:
            raise LemonError(
                f"Scorer '{self.name}' supports {', '.join(self.tasks)} datasets only; this "
                f"dataset is {features.task}. Use --scorer lemon or clip_sim."
            )
        if features.fold_train is not None and not self.fold_models:
            raise LemonError(
                f"Scorer '{self.name}' cannot score with fold models (a --clip_model trained with "
                "--folds): each row comes from its own model. Use --scorer lemon or clip_sim, or a "
                "model trained without --folds."
            )

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        """Select hyper-parameters on ctx's val split; returns them (and the objective) for hparams.json."""
        return {}

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """``{'score': (n,), <component>: (n,), ...}`` for ``split``; higher = more likely mislabelled."""
        raise NotImplementedError

    def score_mismatched(
        self,
        ctx: ScoringContext,
        split: str,
        image_rows: np.ndarray,
        text_rows: np.ndarray,
        hparams: dict[str, Any],
    ) -> np.ndarray:
        """(m,) scores of deliberately mismatched pairs of ``split``: the image of row ``image_rows[p]``
        with the text (and observed label) of row ``text_rows[p]``, scored like real pairs.

        They show what a label error scores like without any label (:mod:`lemon.labelfree`). This
        default scores them as a split of their own (a fresh neighbour search; a reference pair's own row
        is excluded as its image's); scorers with per-pair neighbour terms reuse them instead.
        """
        q, i, j = ctx.split(split), np.asarray(image_rows), np.asarray(text_rows)
        own = ctx.features.self_rows(split)
        pairs = SplitFeatures(
            f"{split} mismatched",
            q.img[i],
            q.txt[j],
            q.texts[j],
            np.asarray(q.observed)[j],
            pred_probs=None if q.pred_probs is None else np.asarray(q.pred_probs)[i],
            reference_row=None if own is None else np.asarray(own)[i],
        )
        with ctx.temporary_split(pairs) as name:
            return np.asarray(self.score(ctx, name, hparams)["score"], dtype=np.float64)


def to_quality(score: np.ndarray) -> np.ndarray:
    """cleanlab-style label quality, lower = worse: ``exp(-score)``, in (0, 1] for non-negative scores.

    Strictly decreasing in the score, so rankings are identical, and per-sample (independent of the batch).
    """
    return np.exp(-np.asarray(score, dtype=np.float64))
