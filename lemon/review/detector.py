"""A finished run as a detector: score new image–text pairs against it, fitting nothing.

:meth:`Detector.load` rebuilds what run A scored with: its reference set (A's train split after its
reference cap, from A's args.json and the embedding cache: nothing of A is embedded again, and an entry the
cache no longer holds is a one-line error), its model (A's resolved ``--clip_model`` and precision), its
scorer with A's hyper-parameters (hparams.json) and the threshold A flagged with. :meth:`Detector.score`
embeds only the new pairs and scores them: no selection, no label-free estimate, no threshold chosen.

A new pair that is one of A's reference pairs (image and text embeddings within :data:`SAME_PAIR` cosine
distance of that pair's, same label) gets that reference row excluded from its neighbours, as A excluded it,
so every pair of A scores as A scored it. Note the one case this cannot tell apart: an A pair *outside* the
reference set that duplicates a reference pair exactly (A let it see its duplicate) is scored here as the
reference pair. ``python -m run_lemon --detector runs/A ... --output_dir runs/B`` scores a dataset the same
way into a run folder (:mod:`lemon.review.detector_run`). A's folder is only read.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lemon.core.npy import blocks, release
from lemon.data.features import Features, SplitFeatures
from lemon.review.reference import DetectorError, model_name, open_embedder, read_run, rebuild
from lemon.scale.stream import BLOCK_ROWS

if TYPE_CHECKING:
    from lemon.embed.base import Embedder
    from lemon.scorers.base import Scorer, ScoringContext

log = logging.getLogger(__name__)

#: a new pair whose image and text embeddings are within this cosine distance of a reference pair's (and
#: whose label is the same) is that reference pair: float32 rounding of one pair embedded twice is ~1e-7
SAME_PAIR = 1e-5
#: searches that return approximate neighbours: a detector of such a run rebuilds the same index (A's
#: settings and seed), so that A's own pairs keep A's neighbours and scores
APPROXIMATE = ("ivf_gemm", "ivf", "hnsw")


class Detector:
    """A finished run ready to score new pairs (build it with :meth:`load`; see the module docstring).

    Attributes: ``run_dir``, ``scorer_name``, ``k``, ``hparams`` (A's hparams.json), ``thresholds`` (A's,
    chosen on A's val split or by A's label-free rule), ``flag_rule`` and ``threshold`` (the one A flagged
    with), ``task``, ``class_names``, ``reference_size``, ``model_name`` (None for a run of precomputed
    embeddings).
    """

    def __init__(
        self,
        run_dir: Path,
        args: dict[str, Any],
        hparams: dict[str, Any],
        scorer: Scorer,
        features: Features,
        precision: str,
        device: str,
        knn_backend: str,
        cache_dir: str | None,
    ) -> None:
        self.run_dir, self.args, self.hparams = run_dir, args, hparams
        self.scorer, self.features, self.device = scorer, features, device
        self.scorer_name = str(hparams["scorer"])
        self.k = int(hparams["knn_k"])
        self.thresholds = {n: float(v) for n, v in hparams["thresholds"].items()}
        self.flag_rule = str(hparams["flag_rule"])
        self.threshold = self.thresholds[self.flag_rule]
        self.task = features.task
        self.class_names = class_names(features)
        self.reference_size = len(features.reference_index)
        self.prompt = str(args.get("resolved", {}).get("prompt") or "")
        data = args.get("data") or {}
        self.embedder_id: str | None = data.get("embedder_id")
        self.model_name: str | None = model_name(args) if self.embedder_id else None
        self.precision = precision
        self.knn_backend = knn_backend
        self.cache_dir = cache_dir
        self._contexts: dict[str, ScoringContext] = {}
        self._embedder: Embedder | None = None
        #: how the last :meth:`score_split` searched (backend, seconds, reference pairs found, recall)
        self.last_search: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        *,
        device: str = "auto",
        knn_backend: str = "auto",
        cache_dir: str | None = None,
    ) -> Detector:
        """The finished run in ``run_dir`` as a detector.

        Parameters
        ----------
        run_dir : the ``--output_dir`` of a finished ``python -m run_lemon`` run (it holds ``done``),
            scored by a scorer whose score of a pair depends on the pair and the reference set only (lemon,
            clip_sim, clip_logits, deep_knn)
        device : where new pairs are embedded and searched ('auto': CUDA when present)
        knn_backend : 'auto' searches as A did when A's search was approximate (the same index), else exactly;
            or any ``--knn_backend`` name
        cache_dir : the embedding cache of the *new* pairs (default: $LEMON_CACHE_DIR); A's reference
            embeddings are read from the cache A recorded in its args.json

        Raises :class:`DetectorError` (one line: what is missing and how to fix it) when the run is not
        finished, its scorer cannot score new pairs, or its model or reference embeddings are gone.
        """
        from lemon.core.device import resolve_device
        from lemon.neighbors.base import KNN_BACKENDS

        run_dir = Path(run_dir).expanduser()
        args, hparams = read_run(run_dir)
        if knn_backend not in KNN_BACKENDS:
            raise DetectorError(
                f"Unknown knn_backend '{knn_backend}'. Available: {', '.join(KNN_BACKENDS)}."
            )
        start = time.perf_counter()
        dev = resolve_device(device)
        scorer, features, precision = rebuild(run_dir, args, hparams, dev)
        detector = cls(
            run_dir, args, hparams, scorer, features, precision, dev, knn_backend, cache_dir
        )
        log.info(
            "detector %s: %s, k=%d, reference of %d pairs, threshold %.6g (%s), loaded in %.1f s",
            run_dir,
            detector.scorer_name,
            detector.k,
            detector.reference_size,
            detector.threshold,
            detector.flag_rule,
            time.perf_counter() - start,
        )
        return detector

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.run_dir)!r}, scorer={self.scorer_name!r}, k={self.k}, "
            f"reference={self.reference_size}, threshold={self.threshold:.6g} ({self.flag_rule}))"
        )

    # ------------------------------------------------------------------ scoring
    def score(
        self,
        *,
        image_embeddings: np.ndarray | None = None,
        text_embeddings: np.ndarray | None = None,
        labels: Sequence | None = None,
        images: Sequence[Any] | None = None,
        texts: Sequence[str] | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> pd.DataFrame:
        """Score new image–text pairs against the run's reference set; one row per pair, in input order.

        Parameters
        ----------
        image_embeddings, text_embeddings : (n, d) arrays made by the run's model (any norm), or the raw
            inputs, embedded here with the run's model and precision (through the embedding cache):
        images : n image file paths or PIL images
        texts : n texts (captions); for a classification run the default is the run's prompt + the class
            name of each label, as the run embedded its own pairs
        labels : (n,) the given caption (str) of each pair, or for a classification run its class, as the
            run's class id (int) or class name (str); default: ``texts``
        batch_size, num_workers : how raw inputs are embedded

        Returns
        -------
        pandas.DataFrame with ``score`` (higher = more likely mislabelled) and its terms (``d_mm``, ``s_n``,
        ``s_m`` for lemon), ``label_quality`` (exp(-score), lower = worse), ``given_label``, ``flagged``
        (score >= the run's threshold) and ``detector_idx`` (the run's train ``idx`` of the identical
        reference pair, -1 for a new pair). ``df.attrs``: the run, its scorer, k, hyper-parameters,
        threshold and flag rule. Nothing is fitted: the same pair always gets the same score.
        """
        from lemon.scorers.base import to_quality

        split, given = self._api_split(
            image_embeddings, text_embeddings, labels, images, texts, batch_size, num_workers
        )
        out = self.score_split(split)
        df = pd.DataFrame({"score": out["score"]})
        df["label_quality"] = np.minimum(to_quality(out["score"]), 1.0)
        for key, value in out.items():
            if key not in ("score", "detector_idx") and np.ndim(value) == 1:
                df[key] = value
        df["given_label"] = given
        df["flagged"] = out["score"] >= self.threshold
        df["detector_idx"] = out["detector_idx"]
        df.attrs.update(self.describe())
        return df

    def score_split(
        self,
        split: SplitFeatures,
        block_rows: int = BLOCK_ROWS,
        keep_neighbours: bool = False,
        recall_sample: int = 0,
        n_queries: int | None = None,
    ) -> dict[str, np.ndarray]:
        """The scorer's outputs for ``split`` (new pairs embedded by the run's model, labels as the run's
        class ids), scored against the reference set with the run's hyper-parameters, block by block;
        plus ``detector_idx`` (see :meth:`score`).

        Every pair is scored once against the whole reference set; the pairs whose image neighbours show
        them to be reference pairs (:meth:`_same_pairs`) are then scored again with their own row excluded,
        so the search is not repeated for the others. ``recall_sample``: with a search that is not exact
        float32, how many queries to compare with exact search; ``n_queries``: the new pairs of every split
        to be scored (what ``knn_backend='auto'`` sizes the search by; default: this split's). How it
        searched: :attr:`last_search`."""
        from lemon.scale import stream

        self._check_split(split)
        if not len(split):
            raise DetectorError(f"split '{split.split}' has no pairs to score.")
        ctx, reason = self._context(n_queries or len(split))
        start, searched = time.perf_counter(), ctx.search_seconds
        query = _rows(split, f"new {split.split}")
        pieces, same = [], np.full(len(split), -1, dtype=np.int64)
        with ctx.temporary_split(query) as name:
            for a, b in blocks(len(split), block_rows):
                block = ctx.block(name, a, b)
                out = self.scorer.score(block, name, self.hparams)
                pieces.append({k: v for k, v in out.items() if keep_neighbours or np.ndim(v) == 1})
                same[a:b] = self._same_pairs(block, block.split(name))
                release(split.img, a, b)
                release(split.txt, a, b)
            recall = stream.measure_recall(ctx, [name], self.k, recall_sample, 0)
        out = {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}
        matched = np.flatnonzero(same >= 0)
        if len(matched):  # reference pairs: their own row excluded, as the run excluded it
            again = _rows(split, f"new {split.split} (reference pairs)", matched, same[matched])
            with ctx.temporary_split(again) as name:
                redo = stream.score_splits(
                    self.scorer, ctx, [name], self.hparams, block_rows, keep_neighbours
                )[name]
            for key, value in redo.items():
                out[key][matched] = value
        reference_ids = np.asarray(ctx.reference.ids)
        out["detector_idx"] = np.where(same >= 0, reference_ids[np.maximum(same, 0)], -1)
        self.last_search = {
            "knn_backend": ctx.knn_choice()[0],
            "knn_search": "; ".join(sorted({s.describe() for s in ctx.searchers.values()})),
            "knn_reason": reason,
            "knn_s": ctx.search_seconds - searched,
            "score_s": time.perf_counter() - start,
            "same_pairs": len(matched),
            **recall,
        }
        return out

    def describe(self) -> dict[str, Any]:
        """What scores and flags the new pairs (args.json, hparams.json and the API frame's attrs)."""
        from lemon.method.hparams import HPARAM_NAMES

        return {
            "detector": str(self.run_dir.resolve()),
            "scorer": self.scorer_name,
            "k": self.k,
            "hparams": {n: self.hparams[n] for n in HPARAM_NAMES if n in self.hparams},
            "selection": self.hparams.get("selection"),
            "threshold": self.threshold,
            "flag_rule": self.flag_rule,
            "thresholds": dict(self.thresholds),
            "model": self.model_name,
            "embedder_id": self.embedder_id,
            "precision": self.precision if self.model_name else None,
            "reference_size": self.reference_size,
        }

    # ------------------------------------------------------------------ new pairs
    def class_ids(self, labels: Sequence[Any], what: str = "labels") -> np.ndarray:
        """Class ids of the run for ``labels`` given as its class names (str) or ids (int); a class the run
        does not know is a one-line error listing them."""
        names = self.class_names or []
        arr = np.asarray(labels, dtype=object)
        if all(isinstance(x, str) for x in arr):
            index = {name: i for i, name in enumerate(names)}
            unknown = sorted({x for x in arr if x not in index})
            ids = np.asarray([index.get(x, -1) for x in arr], dtype=np.int64)
        elif all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in arr):
            ids = arr.astype(np.int64)
            unknown = sorted({int(x) for x in ids if not 0 <= x < len(names)})
        else:
            kinds = sorted({type(x).__name__ for x in arr})
            raise DetectorError(
                f"{what} must be class names (str) or class ids (int) of detector {self.run_dir}, "
                f"got {', '.join(kinds)}."
            )
        if unknown:
            shown = ", ".join(map(repr, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise DetectorError(
                f"{what} hold {len(unknown)} classes that detector {self.run_dir} does not know: "
                f"{shown}; its {len(names)} classes are {', '.join(names[:20])}"
                f"{' ...' if len(names) > 20 else ''} (as names, or ids 0..{len(names) - 1})."
            )
        return ids

    def to_run_classes(self, features: Features) -> None:
        """Re-express a new dataset's class labels (its own ids of its own class names) as the run's class
        ids, in place: class names are what the two data sets share (ids, where the new one names none)."""
        if features.task != self.task:
            raise DetectorError(
                f"Detector {self.run_dir} scores {self.task} data; this data is {features.task}: "
                "score it with a run of its own task."
            )
        if self.task != "classification":
            return
        # a data set that names no classes (an npz without class_names) gives the run's class ids
        names = None if features.class_names is None else np.asarray(class_names(features), object)
        for split in features.splits.values():
            for field in ("observed", "clean"):
                ids = getattr(split, field)
                if ids is not None:
                    ids = np.asarray(ids, dtype=np.int64)
                    given = list(ids) if names is None else list(names[ids])
                    setattr(split, field, self.class_ids(given, f"{field} labels"))
            # the texts the run's prompts read (what --use_discrete_for_text compares)
            split.texts = self._prompts()[split.observed]
        features.class_names = self.class_names

    def _prompts(self) -> np.ndarray:
        """(C,) the run's text of each class: its prompt + the class name."""
        return np.asarray([self.prompt + c for c in self.class_names or []], dtype=object)

    def embedder(self) -> Embedder:
        """The run's model, with the run's precision (weights load when first used)."""
        if self.model_name is None:
            raise DetectorError(
                f"Detector {self.run_dir} scored precomputed embeddings (--dataset "
                f"{self.args.get('dataset')}): it has no model to embed images or texts with; pass "
                "image_embeddings and text_embeddings made as its were."
            )
        if self._embedder is None:
            self._embedder = open_embedder(self.run_dir, self.args, self.device, self.precision)
        return self._embedder

    def _api_split(
        self, image_embeddings, text_embeddings, labels, images, texts, batch_size, num_workers
    ) -> tuple[SplitFeatures, np.ndarray]:
        """The new pairs of :meth:`score` as a split (checked, raw inputs embedded), and the labels given."""
        from lemon.api.inputs import check_embeddings, check_labels, embed_inputs

        for array, raw, what in (
            (image_embeddings, images, "image"),
            (text_embeddings, texts, "text"),
        ):
            if array is not None and raw is not None:
                raise DetectorError(f"give {what}_embeddings or {what}s=, not both.")
        if image_embeddings is None and images is None:
            raise DetectorError(
                "no image input: give image_embeddings or images= (paths or PIL images)."
            )
        if labels is None:
            if texts is None or self.task == "classification":
                raise DetectorError("no labels: give the caption or class of each pair (labels=).")
            labels = texts
        given = np.asarray(labels, dtype=object)
        if given.ndim != 1:
            raise DetectorError(f"labels must be 1-D, one per pair, got shape {given.shape}.")
        if not len(given):
            raise DetectorError("no pairs: the labels are empty; pass at least one pair.")
        if self.task == "classification":
            observed = self.class_ids(list(given))
            strings = self._prompts()[observed]
        else:
            observed, task = check_labels(given)
            if task != "captioning":
                raise DetectorError(
                    f"Detector {self.run_dir} scores captions: labels must be strings, got class ids."
                )
            strings = observed
        if text_embeddings is None and texts is None:
            texts = list(strings)
        if texts is not None and self.task == "classification":
            strings = np.asarray([str(t) for t in texts], dtype=object)
        lengths = {
            name: len(v)
            for name, v in (("image_embeddings", image_embeddings), ("images", images),
                            ("text_embeddings", text_embeddings), ("texts", texts), ("labels", given))
            if v is not None
        }  # fmt: skip
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n} {m}" for n, m in lengths.items())
            raise DetectorError(f"the inputs must have one entry per pair, got {shown}.")
        if images is not None or texts is not None:
            img, txt = embed_inputs(
                images, texts, self.embedder(), self.cache_dir, self.device, batch_size, num_workers
            )
            image_embeddings = img if img is not None else image_embeddings
            text_embeddings = txt if txt is not None else text_embeddings
        img = check_embeddings(image_embeddings, "image_embeddings")
        txt = check_embeddings(text_embeddings, "text_embeddings")
        split = SplitFeatures("new", img, txt, np.asarray(strings, dtype=object), observed)
        return split, given

    def _check_split(self, split: SplitFeatures) -> None:
        dim = self.features.splits["train"].img.shape[1]
        if split.img.shape[1] != dim:
            raise DetectorError(
                f"the new pairs' embeddings have dimension {split.img.shape[1]}, but detector "
                f"{self.run_dir}'s reference set has {dim}: embed them with its model "
                f"({self.model_name or 'the one that made its embeddings'})."
            )
        if split.fold is not None:
            raise DetectorError("new pairs embedded out of fold (--folds) cannot be scored here.")

    # ------------------------------------------------------------------ search
    def _context(self, n_new: int) -> tuple[ScoringContext, str]:
        """The scoring context over the reference set for ``n_new`` new pairs: its search backend and why
        (one context, with its searchers, per backend)."""
        from lemon.neighbors import KnnOptions, resolve_backend
        from lemon.scorers.base import ScoringContext

        a_backend = str(self.hparams.get("knn_backend") or "")
        cfg = self.args
        seed = int(cfg.get("seed", 0))
        nlist = nprobe = None
        if self.knn_backend != "auto":
            backend, reason = self.knn_backend, f"--knn_backend {self.knn_backend}"
        elif a_backend in APPROXIMATE:
            backend, nlist, nprobe = a_backend, cfg.get("knn_nlist"), cfg.get("knn_nprobe")
            reason = (
                f"the detector's own search ({a_backend}, approximate), rebuilt with its settings so "
                "that its pairs keep their neighbours; --knn_backend torch for exact search"
            )
        else:
            auto = KnnOptions(backend="auto", device=self.device)
            backend, reason = resolve_backend(auto, n_new, self.reference_size)
        if backend not in self._contexts:
            knn = KnnOptions(backend, self.device, nlist, nprobe, seed=seed)
            self._contexts[backend] = ScoringContext(self.features, knn=knn)
        return self._contexts[backend], reason

    def _same_pairs(self, ctx: ScoringContext, part: SplitFeatures) -> np.ndarray:
        """(n,) the reference row holding the same pair as each pair of ``part`` (image and text
        embeddings within SAME_PAIR cosine distance, same label; the most similar such row), -1 where
        there is none. Read from the image neighbours the scorer just searched (memoised in ``ctx``): a
        reference pair is its own nearest image neighbour, at similarity 1."""
        ref = ctx.reference
        sim, idx = ctx.neighbours(part.split, "img", self.k)
        out = np.full(len(part), -1, dtype=np.int64)
        rows, cols = np.nonzero(sim >= 1 - SAME_PAIR)
        if len(rows):
            j = idx[rows, cols]
            txt = np.einsum("nd,nd->n", part.txt[rows], ref.txt[j], dtype=np.float64)
            label = np.asarray(ref.observed)[j] == np.asarray(part.observed)[rows]
            rows, j = rows[(txt >= 1 - SAME_PAIR) & label], j[(txt >= 1 - SAME_PAIR) & label]
            first = np.unique(rows, return_index=True)[1]  # row-major: the most similar first
            out[rows[first]] = j[first]
        return out


def _rows(
    split: SplitFeatures,
    name: str,
    index: np.ndarray | None = None,
    reference_row: np.ndarray | None = None,
) -> SplitFeatures:
    """Rows ``index`` (all by default) of ``split`` under another name, their embeddings exactly as
    ``split`` holds them (not normalised again: a pair keeps its bits), with their own reference rows."""
    if index is None:
        return dataclasses.replace(split, split=name, reference_row=reference_row, normalized=True)

    def pick(a):
        return None if a is None else np.asarray(a)[index]

    return SplitFeatures(
        name,
        np.asarray(split.img[index]),
        np.asarray(split.txt[index]),
        split.texts[index],
        pick(split.observed),
        pick(split.clean),
        pick(split.is_mislabel),
        pick(split.pred_probs),
        pick(split.ids),
        reference_row=reference_row,
        normalized=True,
    )


def class_names(features: Features) -> list[str] | None:
    """The class names of classification features; a data set that names none (an ``--embeddings`` npz
    without ``class_names``) calls its classes by their ids ('0', '1', ...), as its prompts do."""
    if features.task != "classification":
        return None
    if features.class_names is not None:
        return [str(c) for c in features.class_names]
    if features.label_prompt_txt is not None:
        n = len(features.label_prompt_txt)
    else:
        n = 1 + max(int(np.max(s.observed, initial=-1)) for s in features.splits.values())
    return [str(i) for i in range(n)]
