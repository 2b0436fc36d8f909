"""The base of the scorers that run a second model on each pair's image and text (blip_itm, blip_capfilt,
llava, vdc).

They share the pipeline's data, thresholds and evaluation like every scorer, and need what embeddings alone
do not carry: each split's images (its :class:`~lemon.data.base.ImageSource`) and texts. Their outputs are
cached like embeddings, in the same content-keyed store: keyed by the scorer, its checkpoint(s) and settings,
the dataset, the exact ordered (image id, text) pairs and the images' content fingerprint, so a sweep over
k, distances or seeds never runs the model twice. Models load only when the cache misses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.features import Features, SplitFeatures
from lemon.embed.base import resolve_precision
from lemon.embed.cache import EmbeddingCache
from lemon.scorers.base import Scorer, ScorerOptions, ScoringContext, option

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheIdentity:
    """What the embedding cache keys an entry by: a name, a folder id and a settings string."""

    name: str
    id: str
    preprocessing: str


class _Images:
    """A map-style dataset of an ImageSource's PIL images (decoded in DataLoader workers)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        image = self.source[i]
        return image if image.mode == "RGB" else image.convert("RGB")


def _as_list(batch: list) -> list:
    return batch


def image_batches(source: Any, batch_size: int, num_workers: int) -> Iterator[tuple[slice, list]]:
    """(rows, PIL images) of ``source`` in order, ``batch_size`` at a time, decoded by ``num_workers``."""
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(
        _Images(source),  # type: ignore[arg-type]  # map-style; torch types it Dataset
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_as_list,
    )
    start = 0
    for images in loader:
        yield slice(start, start + len(images)), images
        start += len(images)


@dataclass(frozen=True)
class PairModelOptions(ScorerOptions):
    """What every model-based scorer reads beyond the shared options."""

    model_batch_size: int | None = option(
        None,
        "Batch size of the model-based baselines (default: blip 32, llava 8, vdc 16).",
        identity=False,
    )

    def validate(self) -> None:
        super().validate()
        self.at_least("model_batch_size", 1)


#: mismatched pairs a model-based scorer scores for the label-free rule (each costs a model call)
MAX_MISMATCHED = 512


class PairModelScorer(Scorer):
    """Scores each pair with a model that sees its image and text; higher = more likely mislabelled.

    Subclasses set ``columns`` (named outputs, ``score`` first), ``default_batch_size`` and implement
    ``identity`` (checkpoints and settings: the cache key), ``load`` (the models, once) and either
    ``score_batch(images, texts) -> (b, len(columns))`` or, when batching differs, ``compute``.
    """

    Options: ClassVar[type[ScorerOptions]] = PairModelOptions
    options: PairModelOptions
    needs_images: ClassVar[bool] = True
    columns: tuple[str, ...] = ("score",)
    default_batch_size: ClassVar[int] = 16

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        self.device = "cpu"
        self.precision = "fp32"
        self._loaded = False

    # ------------------------------------------------------------------ contract
    def identity(self) -> tuple[str, str]:
        """(checkpoint id(s), settings) of this scorer: what its outputs depend on besides the pairs."""
        raise NotImplementedError

    def load(self) -> None:
        """Load the model(s) onto ``self.device`` in ``self.precision``."""
        raise NotImplementedError

    def score_batch(self, images: list, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def texts(self, ctx: ScoringContext, q: SplitFeatures) -> list[str]:
        """What the model reads of each pair: the text the embedder saw (caption or class prompt)."""
        return [str(t) for t in q.texts]

    # ------------------------------------------------------------------ shared
    @property
    def batch_size(self) -> int:
        return self.options.model_batch_size or self.default_batch_size

    def check(self, features: Features) -> None:
        super().check(features)
        missing = [s for s, f in features.splits.items() if f.images is None]
        if missing:
            raise LemonError(
                f"Scorer '{self.name}' runs a model on each pair's image and text, but the data "
                f"'{features.provenance.source or 'given'}' carries embeddings only (no images in "
                f"{', '.join(missing)}); run it on a dataset with images (e.g. --dataset demo, csv, "
                "folder or one of the paper's)."
            )

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        checkpoints, settings = self.identity()
        return {"model": checkpoints, "model_settings": settings}

    def compute(self, images: Any, texts: list[str]) -> np.ndarray:
        """(n, len(columns)) outputs for every pair of a split, in batches."""
        self._ensure_loaded()
        out = np.empty((len(texts), len(self.columns)), dtype=np.float64)
        for rows, batch in image_batches(images, self.batch_size, self.options.num_workers):
            out[rows] = self.score_batch(batch, texts[rows])
        return out

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()
            self._loaded = True

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        q = ctx.split(split)
        rows = np.arange(len(q))
        outputs = self._cached_outputs(ctx, q, rows, rows, "pairs")
        return {c: outputs[:, j].astype(np.float64) for j, c in enumerate(self.columns)}

    def score_mismatched(
        self,
        ctx: ScoringContext,
        split: str,
        image_rows: np.ndarray,
        text_rows: np.ndarray,
        hparams: dict[str, Any],
    ) -> np.ndarray:
        """Scores of at most MAX_MISMATCHED of the mismatched pairs, spread evenly over them: each costs a
        model call, and the label-free rule needs their score distribution, not every one of them."""
        q = ctx.split(split)
        pick = np.unique(np.linspace(0, len(image_rows) - 1, MAX_MISMATCHED).astype(np.int64))
        i, j = np.asarray(image_rows)[pick], np.asarray(text_rows)[pick]
        return self._cached_outputs(ctx, q, i, j, "mismatched pairs")[:, 0].astype(np.float64)

    def _cached_outputs(
        self, ctx: ScoringContext, q: SplitFeatures, i: np.ndarray, j: np.ndarray, kind: str
    ) -> np.ndarray:
        """(m, len(columns)) model outputs of the pairs (image of row i[p], text of row j[p]) of split
        ``q``, through the embedding cache (keyed by model, settings, image and text)."""
        self.device = ctx.device
        self.precision = resolve_precision(self.options.precision, ctx.device)
        all_texts = self.texts(ctx, q)
        texts = [all_texts[r] for r in j]
        checkpoints, settings = self.identity()
        key = CacheIdentity(
            self.name,
            f"scorer-{self.name}-{checkpoints}",
            f"{type(self).__name__}/{settings}/{self.precision}",
        )
        refs: Sequence[str] = q.image_refs if q.image_refs is not None else [""] * len(q)
        same = len(i) == len(q) and np.array_equal(i, np.arange(len(q)))
        assert q.images is not None  # check() refused data without images
        images = q.images if same else q.images.subset(i)
        return EmbeddingCache(self.options.cache_dir).get_or_compute(
            key,
            f"{kind}/{ctx.features.provenance.source}",
            [f"{refs[r]}\t{t}" for r, t in zip(i, texts)],
            lambda: self.compute(images, texts),
            content=images.fingerprint(),
            unit=False,  # model outputs, not embeddings
        )
