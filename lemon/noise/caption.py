"""Caption noise: ``random``, ``noun`` and ``cat`` swaps, vectorised over the split.

Each picks exactly floor(level * N) distinct samples of a split and gives each the (pre-noise) caption of
another sample of the same split, never itself. ``random`` draws that other sample uniformly; ``noun`` and
``cat`` first draw one of the sample's nouns / categories that some other sample shares, then a uniformly
random other sample holding it. Samples with no shareable noun / category are never chosen. A swap onto an
identical caption is not a label error (``is_mislabel`` compares strings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from lemon.core.errors import LemonError, MissingDependencyError
from lemon.data.base import DatasetSplits, PairSplit
from lemon.noise.base import Noise, n_noisy
from lemon.noise.registry import NOISES

log = logging.getLogger(__name__)
Tagger = Callable[[Sequence[str]], list[list[str]]]
SPACY_MODEL = "en_core_web_sm"


def random_swap(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(src, tgt): k distinct samples and, for each, a uniformly random *other* sample."""
    src = rng.choice(n, k, replace=False)
    tgt = rng.integers(0, n - 1, k) if n > 1 else np.zeros(k, dtype=np.int64)
    return src, tgt + (tgt >= src)


def shared_key_swap(
    keys: Sequence[Sequence[str]], k: int, rng: np.random.Generator, what: str = "key"
) -> tuple[np.ndarray, np.ndarray]:
    """(src, tgt): k distinct samples, each paired with a random other sample sharing one of its keys.

    The key is drawn uniformly among the sample's *shareable* keys (held by at least one other sample),
    then the partner uniformly among the other holders of that key. Raises when fewer than k samples have a
    shareable key.
    """
    n = len(keys)
    unique = [list(dict.fromkeys(ks)) for ks in keys]  # one pair per (sample, key)
    owner = np.repeat(np.arange(n), [len(u) for u in unique])
    flat = np.empty(len(owner), dtype=object)
    flat[:] = [x for u in unique for x in u]
    token = np.unique(flat, return_inverse=True)[1].reshape(-1).astype(np.int64)
    count = np.bincount(token, minlength=1)
    shared = count[token] >= 2
    s_owner, s_token = owner[shared], token[shared]
    eligible, first, per_sample = np.unique(s_owner, return_index=True, return_counts=True)
    if k > len(eligible):
        raise LemonError(
            f"asks for {k} swaps but only {len(eligible)} of the {n} samples share a {what} with "
            f"another sample; lower --noise_level to at most {len(eligible) / max(n, 1):.3f}."
        )
    pick = rng.choice(len(eligible), k, replace=False)
    src = eligible[pick]
    pair = first[pick] + (rng.random(k) * per_sample[pick]).astype(
        np.int64
    )  # one shareable key each
    tok = s_token[pair]
    order = np.argsort(s_token, kind="stable")  # shareable pairs grouped by key
    start = np.searchsorted(s_token[order], tok)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    self_pos = position[pair] - start
    r = (rng.random(k) * (count[tok] - 1)).astype(np.int64)
    r += r >= self_pos  # skip the sample itself within its key group
    return src, s_owner[order[start + r]]


def _swapped(split: PairSplit, src: np.ndarray, tgt: np.ndarray) -> PairSplit:
    observed = split.observed.copy()
    observed[src] = split.observed[tgt]
    return split.with_observed(observed, n_swapped=len(src))


@NOISES.register("random")
class RandomSwap(Noise):
    """Swap in the caption of a uniformly random other sample."""

    task: ClassVar[str] = "captioning"

    def apply(self, split: PairSplit, level: float, rng: np.random.Generator) -> PairSplit:
        n = len(split)
        k = n_noisy(level, n)
        if k and n < 2:
            raise LemonError(
                f"split '{split.split}' has {n} sample; 'random' noise needs at least 2."
            )
        return _swapped(split, *random_swap(n, k, rng))


class _SharedKeySwap(Noise, abstract=True):
    task: ClassVar[str] = "captioning"
    what: ClassVar[str]

    def keys(self, split: PairSplit) -> Sequence[Sequence[str]]:
        raise NotImplementedError

    def apply(self, split: PairSplit, level: float, rng: np.random.Generator) -> PairSplit:
        try:
            src, tgt = shared_key_swap(self.keys(split), n_noisy(level, len(split)), rng, self.what)
        except LemonError as err:
            raise LemonError(
                f"'{self.name}' noise at level {level} on split '{split.split}' {err}"
            ) from None
        return _swapped(split, src, tgt)


@NOISES.register("cat")
class CategorySwap(_SharedKeySwap):
    """Swap in the caption of another sample sharing a category (COCO object, genre, CheXpert finding)."""

    what: ClassVar[str] = "category"

    def check(self, splits: DatasetSplits) -> None:
        for part in splits.splits.values():
            if part.categories is None:
                raise LemonError(
                    part.categories_missing
                    or f"Dataset '{splits.name}' has no per-sample categories for 'cat' noise."
                )

    def keys(self, split: PairSplit) -> Sequence[Sequence[str]]:
        assert split.categories is not None  # check() refused splits without categories
        return split.categories


@NOISES.register("noun")
class NounSwap(_SharedKeySwap):
    """Swap in the caption of another sample whose caption contains one of this caption's nouns.

    Nouns come from ``tagger(texts) -> list of noun lists``; the default is spaCy's English POS tagger
    (``en_core_web_sm``: tokens tagged NOUN, lower-cased), which must be installed.
    """

    what: ClassVar[str] = "noun"

    def __init__(self, tagger: Tagger | None = None) -> None:
        self.tagger = tagger

    def check(self, splits: DatasetSplits) -> None:
        if self.tagger is None:
            self.tagger = spacy_noun_tagger()

    def keys(self, split: PairSplit) -> Sequence[Sequence[str]]:
        if self.tagger is None:
            self.tagger = spacy_noun_tagger()
        nouns = self.tagger([str(t) for t in split.observed_text])
        if len(nouns) != len(split):
            raise LemonError(
                f"the noun tagger returned {len(nouns)} noun lists for {len(split)} captions."
            )
        return nouns


def spacy_noun_tagger(model: str = SPACY_MODEL) -> Tagger:
    """A tagger returning the lower-cased NOUN tokens of each text (spaCy; parser and NER disabled)."""
    try:
        import spacy
    except ImportError:
        raise MissingDependencyError(
            f"'noun' noise needs spaCy and its English model, which are not "
            f"installed: pip install spacy && python -m spacy download {model}"
        ) from None
    try:
        nlp = spacy.load(model, disable=["parser", "ner", "lemmatizer"])
    except OSError:
        raise MissingDependencyError(
            f"'noun' noise needs spaCy's English model '{model}', which is not "
            f"installed: python -m spacy download {model}"
        ) from None

    def tag(texts: Sequence[str]) -> list[list[str]]:
        return [
            [t.text.lower().strip() for t in doc if t.pos_ == "NOUN"]
            for doc in nlp.pipe(texts, batch_size=512)
        ]

    return tag
