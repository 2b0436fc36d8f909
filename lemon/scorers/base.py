"""The scorer contract and the shared scoring context.

Every method — LEMoN and each baseline — is a :class:`Scorer`: ``fit`` picks hyper-parameters on val (a
no-op for parameter-free baselines) and ``score`` returns, for one split, a dict holding ``score``
(one value per sample, **higher = more likely mislabelled**) plus any named components worth writing to
scores.csv. The :class:`ScoringContext` owns the embedded features, builds the kNN searchers once and memoises the
neighbour searches, so scorers that need the same kNN never recompute it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.core.flags import choice_names, flag, flag_fields
from lemon.data.base import TASKS
from lemon.data.features import Features, SplitFeatures
from lemon.method.hparams import DEFAULT_KNN_K

if TYPE_CHECKING:
    from lemon.method.reviewed import ReviewedLabels
    from lemon.neighbors import KnnOptions, Searcher

log = logging.getLogger(__name__)
SPACES = ("img", "txt")
#: the help group of every scorer's own flags (run_lemon groups them by the scorers that read them)
SCORER_GROUP = "scorer"


def option(
    default: Any,
    help: str,
    choices: Sequence[str] | None = None,
    identity: bool = True,
) -> Any:
    """A field of a scorer's ``Options`` that is also a run_lemon flag, ``--<field name>``.

    ``identity``: whether it changes what the scorer computes (False for e.g. a batch size).
    """
    return flag(default, help, SCORER_GROUP, choices, identity=identity)


@dataclass(frozen=True)
class ScorerOptions:
    """What every scorer may read of a run (never the whole run configuration).

    A scorer with settings of its own declares them in a subclass, its ``Options`` (fields made with
    :func:`option` become run_lemon flags); values are checked when the options are built.

    k : neighbours per query; dist_type : 'cosine' or 'euclidean' (squared)
    temperature : softmax temperature of zero-shot class probabilities
    seed : seed of any search or stochastic fit
    num_workers : image decoding workers; precision : 'auto' (fp16 on CUDA, fp32 on CPU), 'fp32', 'fp16'
        or 'bf16'; cache_dir : the cache root a model's outputs are stored under (None: not cached)
    """

    k: int = DEFAULT_KNN_K
    dist_type: str = "cosine"
    temperature: float = 1.0
    seed: int = 0
    num_workers: int = 0
    precision: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        for f in flag_fields(type(self)):
            allowed, value = choice_names(f), getattr(self, f.name)
            if allowed is not None and value not in allowed:
                raise LemonError(f"Unknown {f.name} '{value}'. Available: {', '.join(allowed)}.")
        self.validate()

    def validate(self) -> None:
        """Refuse values out of range, one line each (subclasses extend it)."""

    def at_least(self, name: str, minimum: float, strict: bool = False) -> None:
        """Refuse ``self.<name>`` below ``minimum`` (or equal to it, when ``strict``); None passes."""
        value = getattr(self, name)
        if value is not None and (value <= minimum if strict else value < minimum):
            raise LemonError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}.")


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
        #: pairs a person reviewed (run_lemon --reviewed): labels that replace val's for selection
        self.reviewed: ReviewedLabels | None = None
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
        if self.features.fold_train is not None:
            self._knn[(split, space, k)] = self._fold_neighbours(
                split, space, k, self.features.fold_train
            )
            return self._knn[(split, space, k)]
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

    def image_to_text(self, split: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sim, idx), each (n, k): the reference captions nearest each image of ``split`` (an image query
        against the text searcher; the pair's own reference row excluded). Memoised like
        :meth:`neighbours`; what suggested captions start from."""
        found = self._memoised(split, "img2txt", k)
        if found is not None:
            return found
        start = time.perf_counter()
        found = self.searcher("txt").search(self.split(split).img, k, exclude=self.self_rows(split))
        self._shared["search_s"] += time.perf_counter() - start
        self._knn[(split, "img2txt", k)] = found
        return found

    @property
    def run_memo(self) -> dict[Any, Any]:
        """What is computed once per run and shared by every block of it (e.g. the zero-shot temperature
        of suggested labels), unlike ``memo``, which is per block."""
        return self._shared.setdefault("run_memo", {})

    @property
    def search_seconds(self) -> float:
        """Seconds spent searching neighbours so far (every split and block; index building aside)."""
        return self._shared["search_s"]

    def _fold_neighbours(
        self, split: str, space: str, k: int, views: list[SplitFeatures]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold search: the rows of fold f against the reference set as fold model f embeds it
        (``views[f]``, :attr:`Features.fold_train`; one searcher per fold, built once); ids index the
        stacked reference (:attr:`Features.reference`)."""
        from lemon.neighbors import build_searcher

        q = self.split(split)
        query, fold, exclude = getattr(q, space), q.fold, self.self_rows(split)
        ref_rows = self.features.reference_index
        backend, _ = self.knn_choice()
        searchers = self._shared.setdefault("fold_searchers", {})
        sim = np.zeros((len(q), k), dtype=np.float32)
        idx = np.zeros((len(q), k), dtype=np.int64)
        start = time.perf_counter()
        for f, view in enumerate(views):
            rows = np.flatnonzero(fold == f)
            if not len(rows):
                continue
            if (space, f) not in searchers:
                searchers[(space, f)] = build_searcher(
                    np.asarray(getattr(view, space)[ref_rows]), backend, self.knn
                )
            s, i = searchers[(space, f)].search(
                query[rows], k, exclude=None if exclude is None else exclude[rows]
            )
            sim[rows], idx[rows] = s, i + f * len(ref_rows)
        self._shared["search_s"] += time.perf_counter() - start
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
            self._shared["self_rows"].pop(split.split, None)
            for key in [k for k in self.memo if isinstance(k, tuple) and split.split in k]:
                del self.memo[key]

    def block(self, split: str, start: int, stop: int) -> ScoringContext:
        """This context restricted to rows ``[start, stop)`` of ``split`` (the whole context when they are
        all of it)."""
        if start == 0 and stop == len(self.split(split)):
            return self
        return _BlockContext(self, split, slice(start, stop))

    def rows(self, split: str, index: np.ndarray) -> ScoringContext:
        """This context restricted to rows ``index`` (sorted, distinct) of ``split``: e.g. a sample of a
        split too large to search twice."""
        return _BlockContext(self, split, np.asarray(index, dtype=np.int64))


class _BlockContext(ScoringContext):
    """A range (or a subset) of rows of one split, sharing the parent's reference, searchers and memoised searches."""

    def __init__(self, parent: ScoringContext, split: str, rows: slice | np.ndarray) -> None:
        self.features, self.knn = parent.features, parent.knn
        self.knn_backend, self.device = parent.knn_backend, parent.device
        self.memo = {}
        self.reviewed = parent.reviewed
        self._knn = {}
        self._shared = parent._shared
        self._reference = parent.reference
        self._parent, self._name, self._rows = parent, split, rows
        whole = parent.split(split)
        if isinstance(rows, slice):
            self._block = whole.block(rows.start, rows.stop)
        else:
            self._block = whole.subset(rows)

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
    implement ``score`` and, when they have hyper-parameters, ``fit``. A scorer with settings of its own
    sets ``Options`` to a :class:`ScorerOptions` subclass declaring them: its fields made with
    :func:`option` become run_lemon flags (``lemon.scorers.flags``), so adding one is one edit here.
    """

    name: ClassVar[str]
    #: the options this scorer reads (the shared ones, plus its own flags in a subclass)
    Options: ClassVar[type[ScorerOptions]] = ScorerOptions
    tasks: ClassVar[tuple[str, ...]] = TASKS
    #: runs a model on the images themselves (embeddings alone are not enough)
    needs_images: ClassVar[bool] = False
    #: works on out-of-fold features (each row from its own fold model; the reference set stacked)
    fold_models: ClassVar[bool] = False
    #: each sample's score depends only on the sample and the reference set (not on the rest of its
    #: split), so a large split may be scored block by block (lemon.scale.stream)
    streamable: ClassVar[bool] = False

    def __init__(self, options: ScorerOptions | None = None) -> None:
        if options is None:
            options = self.Options()
        elif not isinstance(options, self.Options):
            # shared options (or another scorer's): the fields this scorer's Options has, the rest of
            # its own at their defaults
            names = {f.name for f in dataclasses.fields(self.Options)}
            kept = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
            options = self.Options(**{n: v for n, v in kept.items() if n in names})
        self.options = options

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

        They show what a label error scores like without any label (:mod:`lemon.method.labelfree`). This
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
