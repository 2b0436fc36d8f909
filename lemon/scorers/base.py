"""The scorer contract and the shared scoring context.

Every method — LEMoN and each baseline — is a :class:`Scorer`: ``fit`` picks hyper-parameters on val (a
no-op for parameter-free baselines) and ``score`` returns, for one split, a dict holding ``score``
(one value per sample, **higher = more likely mislabelled**) plus any named components worth writing to
scores.csv. The :class:`ScoringContext` owns the embedded features, builds the kNN searchers once and memoises the
neighbour searches, so scorers that need the same kNN never recompute it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lemon.data.base import TASKS
from lemon.errors import LemonError
from lemon.features import Features, SplitFeatures
from lemon.methods import DEFAULT_KNN_K

if TYPE_CHECKING:
    from lemon.neighbors import KnnOptions, Searcher

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


class ScoringContext:
    """Features of a run, the kNN searchers over its reference set, and memoised per-split results.

    A searcher (an index, a tensor on the device) is built once per space and serves every split and
    every streamed block. ``memo`` holds what scorers compute per split (e.g. LEMoN's neighbour terms);
    :meth:`block` gives a context restricted to a range of one split's rows, with its own memo, so a split
    of millions of pairs is scored block by block in bounded memory.
    """

    def __init__(
        self,
        features: Features,
        knn_backend: str = "torch",
        device: str = "cpu",
        knn: KnnOptions | None = None,
    ) -> None:
        from lemon.neighbors import KnnOptions

        self.features = features
        self.knn = knn or KnnOptions(backend=knn_backend, device=str(device))
        self.knn_backend = self.knn.backend
        self.device = self.knn.device
        self.memo: dict[Any, Any] = {}
        self._knn: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._shared: dict[str, Any] = {"searchers": {}, "self_rows": {}, "search_s": 0.0}
        self._reference: SplitFeatures | None = None

    @property
    def reference(self) -> SplitFeatures:
        if self._reference is None:
            self._reference = self.features.reference
        return self._reference

    def split(self, name: str) -> SplitFeatures:
        return self.features.splits[name]

    def self_rows(self, name: str) -> np.ndarray | None:
        """(n,) reference row of each sample of split ``name`` (excluded from its neighbours), -1 if none."""
        cache = self._shared["self_rows"]
        if name not in cache:
            cache[name] = self.features.self_rows(name)
        return cache[name]

    def knn_choice(self) -> tuple[str, str]:
        """(backend, reason): the resolved ``--knn_backend`` for this run's size and device."""
        if "choice" not in self._shared:
            from lemon.neighbors import resolve_backend

            n_queries = sum(len(s) for s in self.features.splits.values())
            n_ref = len(self.features.reference_index)
            self._shared["choice"] = resolve_backend(self.knn, n_queries, n_ref)
        return self._shared["choice"]

    def searcher(self, space: str) -> Searcher:
        """The searcher over the reference set's ``space`` embeddings (built on first use)."""
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        searchers = self._shared["searchers"]
        if space not in searchers:
            from lemon.neighbors import build_searcher

            backend, reason = self.knn_choice()
            searchers[space] = build_searcher(getattr(self.reference, space), backend, self.knn)
            log.info("kNN search (%s): %s; %s", space, searchers[space].describe(), reason)
        return searchers[space]

    @property
    def searchers(self) -> dict[str, Searcher]:
        """The searchers built so far, by space."""
        return dict(self._shared["searchers"])

    def _memoised(self, split: str, space: str, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        # a larger k already computed contains the answer (neighbours are sorted)
        for (s, sp, kk), (sim, idx) in self._knn.items():
            if s == split and sp == space and kk >= k:
                return sim[:, :k], idx[:, :k]
        return None

    def neighbours(self, split: str, space: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sim, idx), each (n, k): nearest reference pairs of ``split`` by image or text similarity."""
        found = self._memoised(split, space, k)
        if found is not None:
            return found
        query = getattr(self.split(split), space)
        log.debug(
            "kNN %s/%s k=%d: %d queries x %d reference",
            split,
            space,
            k,
            len(query),
            len(self.reference),
        )
        searcher = self.searcher(space)
        start = time.perf_counter()
        self._knn[(split, space, k)] = searcher.search(query, k, exclude=self.self_rows(split))
        self._shared["search_s"] += time.perf_counter() - start
        return self._knn[(split, space, k)]

    @property
    def search_seconds(self) -> float:
        """Seconds spent searching neighbours so far (every split and block; index building aside)."""
        return self._shared["search_s"]

    def block(self, split: str, start: int, stop: int) -> ScoringContext:
        """This context restricted to rows ``[start, stop)`` of ``split`` (the whole context when they are
        all of it)."""
        if start == 0 and stop == len(self.split(split)):
            return self
        return _BlockContext(self, split, start, stop)


class _BlockContext(ScoringContext):
    """A range of rows of one split, sharing the parent's reference, searchers and memoised searches."""

    def __init__(self, parent: ScoringContext, split: str, start: int, stop: int) -> None:
        self.features, self.knn = parent.features, parent.knn
        self.knn_backend, self.device = parent.knn_backend, parent.device
        self.memo = {}
        self._knn = {}
        self._shared = parent._shared
        self._reference = parent.reference
        self._parent, self._name, self._rows = parent, split, slice(start, stop)
        self._block = parent.split(split).block(start, stop)

    def split(self, name: str) -> SplitFeatures:
        return self._block if name == self._name else self._parent.split(name)

    def self_rows(self, name: str) -> np.ndarray | None:
        rows = self._parent.self_rows(name)
        return rows[self._rows] if rows is not None and name == self._name else rows

    def _memoised(self, split: str, space: str, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        found = super()._memoised(split, space, k)
        if found is None and split == self._name:
            whole = self._parent._memoised(
                split, space, k
            )  # e.g. val, searched whole while fitting
            if whole is not None:
                return whole[0][self._rows], whole[1][self._rows]
        return found


class Scorer:
    """Base class of registered scorers.

    ``name`` (set by the registry) and ``tasks`` (supported tasks) are class attributes. Subclasses
    implement ``score`` and, when they have hyper-parameters, ``fit``.
    """

    name: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]] = TASKS
    #: each sample's score depends only on the sample and the reference set (not on the rest of its
    #: split), so a large split may be scored block by block (lemon.stream)
    streamable: ClassVar[bool] = False

    def __init__(self, options: ScorerOptions | None = None) -> None:
        self.options = options or ScorerOptions()

    def check(self, features: Features) -> None:
        """Refuse data this scorer cannot handle, with a clear message."""
        if features.task not in self.tasks:
            raise LemonError(
                f"Scorer '{self.name}' supports {', '.join(self.tasks)} datasets only; this "
                f"dataset is {features.task}. Use --scorer lemon or clip_sim."
            )

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        """Select hyper-parameters on ctx's val split; returns them (and the objective) for hparams.json."""
        return {}

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """``{'score': (n,), <component>: (n,), ...}`` for ``split``; higher = more likely mislabelled."""
        raise NotImplementedError


def to_quality(score: np.ndarray) -> np.ndarray:
    """cleanlab-style label quality, lower = worse: ``exp(-score)``, in (0, 1] for non-negative scores.

    Strictly decreasing in the score, so rankings are identical, and per-sample (independent of the batch).
    """
    return np.exp(-np.asarray(score, dtype=np.float64))
