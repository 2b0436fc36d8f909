"""The LEMoN score, fully vectorised over whole splits and over batches of hyper-parameters.

score = d_mm + beta * s_n + gamma * s_m, with (for each query pair (x, y), k neighbours j)
  s_n = mean_{j in N(x)} w1(x, x_j; tau_1_n) * exp(-tau_2_n * d(x_j, y_j)) * d(y, y_j)
  s_m = mean_{j in M(y)} w1(y, y_j; tau_1_m) * exp(-tau_2_m * d(x_j, y_j)) * d(x, x_j)
w1 = exp(tau_1 * proximity), proximity = a.b (cosine) or -||a - b||^2 (euclidean), as the original code.
Per split, the (n, k) neighbour terms are computed once; any hyper-parameter vector then costs O(n k).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.features import Features, SplitFeatures
from lemon.method.evaluate import best_f1
from lemon.method.hparams import (
    ABLATION_RULES,
    ABLATIONS,
    HPARAM_NAMES,
    LEMON_FIX_HPARAMS,
    check_hparam_names,
)
from lemon.method.select import SearchSpace, batched, distinct_best, search
from lemon.scorers.base import Scorer, ScorerOptions, ScoringContext
from lemon.scorers.registry import SCORERS
from lemon.scorers.suggestions import suggest

if TYPE_CHECKING:
    import torch

    from lemon.method.reviewed import ReviewedLabels

log = logging.getLogger(__name__)
_GATHER_ROWS = (
    2**17
)  # neighbour rows gathered at once by _gather_distance (256 MiB of float32 at d=512)

GRID: dict[str, Sequence[float] | np.ndarray] = {
    "beta": np.arange(0, 100.01, 5),
    "gamma": np.arange(0, 100.01, 5),
    "tau_1_n": [0, 1, 5, 10],
    "tau_2_n": [0, 1, 5, 10],
    "tau_1_m": [0, 1, 5, 10],
    "tau_2_m": [0, 1, 5, 10],
}
TIED = (("tau_1_n", "tau_1_m"), ("tau_2_n", "tau_2_m"))
MISMATCHED_BLOCK = 32_768  # mismatched pairs scored at once
SCALE = {
    "beta": 50.0,
    "gamma": 50.0,
    "tau_1_n": 5.0,
    "tau_2_n": 5.0,
    "tau_1_m": 5.0,
    "tau_2_m": 5.0,
}
#: the search's own grid and scales, with beta and gamma in spread units (1 = as spread as d_mm)
_UNIT_WEIGHTS = (0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5)
UNIT_GRID: dict[str, Sequence[float] | np.ndarray] = {
    **GRID,
    "beta": _UNIT_WEIGHTS,
    "gamma": _UNIT_WEIGHTS,
}
UNIT_SCALE = {**SCALE, "beta": 1.0, "gamma": 1.0}
POOLED = (("tau_1_n", "tau_2_n"), ("tau_1_m", "tau_2_m"))
MAX_EFFORT = 1.0
SEARCH_DTYPE = "float32"


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the search's (batch, val) tensors are small, so intra-op threads cost
    more than they save, and on a busy machine they wait for each other (15x slower measured)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def pair_distance(a: np.ndarray, b: np.ndarray, dist_type: str) -> np.ndarray:
    """Row-wise distance of unit vectors: 1 - a.b (cosine) or ||a - b||^2 (euclidean)."""
    if dist_type == "cosine":
        return 1.0 - np.einsum("...d,...d->...", a, b, dtype=np.float64)
    diff = a.astype(np.float64) - b
    return np.einsum("...d,...d->...", diff, diff)


def _gather_distance(
    query: np.ndarray, ref: np.ndarray, idx: np.ndarray, dist_type: str, device: str = "cpu"
) -> np.ndarray:
    """(n, k) distance between each query row and its k reference rows ``ref[idx]``.

    The k neighbours' rows are gathered and multiplied in torch (all cores, or the GPU) in float32, the
    precision of the similarities the search itself returns; distances are then formed in float64 from
    the dot products (and, for euclidean, each row's own squared norm: ||a||^2 + ||b||^2 - 2 a.b).
    """
    import torch

    n, k = idx.shape
    out = np.empty((n, k), dtype=np.float64)
    dev = torch.device(device)
    ref_t = torch.as_tensor(np.ascontiguousarray(ref, dtype=np.float32)).to(dev)
    chunk = max(1, _GATHER_ROWS // max(1, k))
    buf = torch.empty((chunk * k, ref_t.shape[1]), dtype=torch.float32, device=dev)
    with torch.inference_mode():
        for s in range(0, n, chunk):
            ids = torch.as_tensor(np.asarray(idx[s : s + chunk], dtype=np.int64)).to(dev)
            q = torch.as_tensor(np.ascontiguousarray(query[s : s + chunk], dtype=np.float32)).to(
                dev
            )
            rows = torch.index_select(ref_t, 0, ids.reshape(-1), out=buf[: ids.numel()])
            dots = torch.bmm(rows.view(len(ids), k, -1), q[:, :, None]).squeeze(2)
            out[s : s + len(ids)] = dots.cpu().numpy()
    if dist_type == "cosine":
        return 1.0 - out
    sq_q = np.einsum("nd,nd->n", query, query, dtype=np.float64)
    sq_r = np.einsum("nd,nd->n", ref, ref, dtype=np.float64)
    return sq_q[:, None] + sq_r[idx] - 2.0 * out


@dataclass
class NeighbourTerms:
    """Everything LEMoN needs for one split, independent of the hyper-parameters.

    d_mm : (n,) multimodal distance of each pair
    prox_n, trd_n, dist_n : (n, k) proximity x.x_j (inside w1), neighbour's own d_mm, text distance d(y, y_j)
    prox_m, trd_m, dist_m : (n, k) proximity y.y_j, neighbour's own d_mm, image distance d(x, x_j)
    idx_n, idx_m : (n, k) reference ids of the image / text neighbours
    """

    d_mm: np.ndarray
    prox_n: np.ndarray
    trd_n: np.ndarray
    dist_n: np.ndarray
    prox_m: np.ndarray
    trd_m: np.ndarray
    dist_m: np.ndarray
    idx_n: np.ndarray
    idx_m: np.ndarray

    def __post_init__(self) -> None:
        import torch

        self._t = {
            (k, dt): torch.as_tensor(np.asarray(getattr(self, k))).to(getattr(torch, dt))
            for k in ("d_mm", "prox_n", "trd_n", "dist_n", "prox_m", "trd_m", "dist_m")
            for dt in ("float64", "float32")
        }

    def neighbour_term(
        self,
        side: str,
        tau_1: np.ndarray,
        tau_2: np.ndarray,
        dtype: str = "float64",
        chunk: int = 32,
    ) -> torch.Tensor:
        """(B, n) s_n or s_m for B (tau_1, tau_2) pairs (chunked over B to bound memory).

        ``dtype``: 'float64' (scoring) or 'float32' (the search: twice as fast)."""
        import torch

        prox, trd, dist = (self._t[(f"{name}_{side}", dtype)] for name in ("prox", "trd", "dist"))
        t1 = torch.as_tensor(np.asarray(tau_1, dtype=np.float64)).to(prox.dtype)[:, None, None]
        t2 = torch.as_tensor(np.asarray(tau_2, dtype=np.float64)).to(prox.dtype)[:, None, None]
        k = prox.shape[1]
        parts = []
        for i in range(0, len(t1), chunk):  # in place: one (chunk, n, k) buffer instead of five
            w = torch.mul(t1[i : i + chunk], prox).sub_(t2[i : i + chunk] * trd).exp_()
            parts.append(w.mul_(dist).sum(dim=2).div_(k))
        return torch.cat(parts)

    def scores(
        self,
        H: np.ndarray,
        use_d_mm: bool = True,
        dtype: str = "float64",
        unit: tuple[float | None, float | None] = (None, None),
    ) -> torch.Tensor:
        """(B, n) scores for hyper-parameter rows H (B, 6) in HPARAM_NAMES order.

        Each distinct (tau_1, tau_2) pair of a side is evaluated once, so batches that vary only beta and
        gamma cost O(B n) after the O(n k) neighbour terms. ``unit`` (per side, beta then gamma): None reads
        the weight as given; a spread r reads it in units of r / (the term's own std over the split) — the
        search's coordinates (see :meth:`weight_factors`).
        """
        import torch

        H = np.asarray(H, dtype=np.float64).reshape(-1, 6)
        total = torch.zeros((len(H), len(self.d_mm)), dtype=getattr(torch, dtype))
        if use_d_mm:
            total += self._t[("d_mm", dtype)]
        for (side, w_col, t1_col, t2_col), r in zip(SIDES, unit):
            active = H[:, w_col] != 0
            if not active.any():
                continue
            taus, inverse = np.unique(H[active][:, [t1_col, t2_col]], axis=0, return_inverse=True)
            term = self.neighbour_term(side, taus[:, 0], taus[:, 1], dtype)
            if r is not None:
                term = term * _factors(term.std(dim=1).double(), r).to(term.dtype)[:, None]
            term = term[torch.as_tensor(inverse.ravel())]
            weight = torch.as_tensor(H[active, w_col]).to(total.dtype)[:, None]
            if active.all():
                total.addcmul_(weight, term)
            else:
                total[torch.as_tensor(active)] += weight * term
        return total

    def weight_factors(self, H: np.ndarray, unit: tuple[float | None, float | None]) -> np.ndarray:
        """(B, 2) what beta and gamma of rows H are multiplied by in ``unit`` coordinates: r / std of the
        term at the row's taus (1 where a side has no unit; 0 where the term is constant, which then
        cannot change the ranking).

        tau_1 rescales a term by about exp(tau_1 * similarity), so a fixed beta means something different
        at every tau_1; in these coordinates beta is the term's weight relative to the spread of d_mm,
        whatever the taus, and the search moves along the ridge instead of across it.
        """
        import torch

        H = np.asarray(H, dtype=np.float64).reshape(-1, 6)
        out = np.ones((len(H), 2))
        for j, ((side, _, t1_col, t2_col), r) in enumerate(zip(SIDES, unit)):
            if r is not None:
                spread = self.neighbour_term(side, H[:, t1_col], H[:, t2_col]).std(dim=1)
                out[:, j] = _factors(spread.to(torch.float64), r).numpy()
        return out

    def to_weights(self, H: np.ndarray, unit: tuple[float | None, float | None]) -> np.ndarray:
        """Rows H in ``unit`` coordinates -> the same scores' beta and gamma as given (float64)."""
        H = np.array(H, dtype=np.float64).reshape(-1, 6)
        H[:, :2] *= self.weight_factors(H, unit)
        return H

    def from_weights(self, H: np.ndarray, unit: tuple[float | None, float | None]) -> np.ndarray:
        """Rows H with beta and gamma as given -> ``unit`` coordinates (the inverse of to_weights)."""
        H = np.array(H, dtype=np.float64).reshape(-1, 6)
        f = self.weight_factors(H, unit)
        H[:, :2] = np.divide(H[:, :2], f, out=np.zeros_like(f), where=f > 0)
        return H


#: per side: name, weight column, tau_1 column, tau_2 column of a hyper-parameter row
SIDES = (("n", 0, 2, 3), ("m", 1, 4, 5))


def _factors(spread: torch.Tensor, reference: float) -> torch.Tensor:
    """reference / spread, 0 where the spread vanishes (a constant term cannot change the ranking)."""
    import torch

    return torch.where(spread > 1e-12, reference / spread.clamp_min(1e-12), 0.0)


@dataclass(frozen=True)
class LemonOptions(ScorerOptions):
    """LEMoN's settings beyond the shared ones (run_lemon's method and selection flags).

    ablation, normalize_d1, use_discrete_for_text, legacy_discrete_weighting : LEMoN variants
    fixed : hyper-parameters given by the user (not selected)
    select : whether hyper-parameters may be selected on the val labels (False: LEMoN_FIX for the rest)
    search_budget : multiplies the hyper-parameter search's budget (LEMoN_OPT)
    """

    ablation: str = "none"
    normalize_d1: bool = False
    use_discrete_for_text: bool = False
    legacy_discrete_weighting: bool = False
    fixed: Mapping[str, float] = field(default_factory=dict)
    select: bool = True
    search_budget: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.ablation not in ABLATIONS:
            raise LemonError(
                f"Unknown ablation '{self.ablation}'. Available: {', '.join(ABLATIONS)}."
            )
        check_hparam_names(self.fixed)
        self.at_least("search_budget", 0, strict=True)


@SCORERS.register("lemon")
class LemonScorer(Scorer):
    """LEMoN with hyper-parameters selected on val (LEMoN_OPT), fixed (CLI / LEMoN_FIX), or ablated."""

    Options = LemonOptions
    options: LemonOptions
    fold_models = True
    streamable = True

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        forced, self.use_d_mm = ABLATION_RULES[self.options.ablation]
        self.forced = dict(forced)

    def check(self, features: Features) -> None:
        super().check(features)
        if features.fold_train is not None and self.options.normalize_d1:
            raise LemonError(
                "--normalize_d1 needs one model's class prompts; with fold models (--folds) each row "
                "has its own model: drop --normalize_d1 or use a model trained without --folds."
            )

    # ------------------------------------------------------------------ per-split terms
    def terms(self, ctx: ScoringContext, split: str) -> NeighbourTerms:
        """The split's neighbour terms, computed once per context (a streamed block has its own)."""
        o = self.options
        key: tuple[Any, ...] = (
            "lemon_terms",
            split,
            o.k,
            o.dist_type,
            o.normalize_d1,
            o.use_discrete_for_text,
        )
        key += (o.legacy_discrete_weighting,)
        if key not in ctx.memo:
            ctx.memo[key] = self._compute_terms(ctx, split)
        return ctx.memo[key]

    def _compute_terms(self, ctx: ScoringContext, split: str) -> NeighbourTerms:
        cfg, k = self.options, self.options.k
        q, ref = ctx.split(split), ctx.reference
        sim_n, idx_n = ctx.neighbours(split, "img", k)
        sim_m, idx_m = ctx.neighbours(split, "txt", k)
        d_ref = pair_distance(ref.img, ref.txt, cfg.dist_type)
        if cfg.dist_type == "cosine":
            prox_n, prox_m = sim_n.astype(np.float64), sim_m.astype(np.float64)
        else:
            prox_n, prox_m = (
                -(2.0 - 2.0 * sim_n.astype(np.float64)),
                -(2.0 - 2.0 * sim_m.astype(np.float64)),
            )
        if cfg.use_discrete_for_text:
            dist_n = (ref.texts[idx_n] != q.texts[:, None]).astype(np.float64)
            if cfg.legacy_discrete_weighting and cfg.dist_type == "cosine":
                prox_n = -prox_n  # the original forgot to negate the similarity here
        else:
            dist_n = _gather_distance(q.txt, ref.txt, idx_n, cfg.dist_type, ctx.device)
        dist_m = _gather_distance(q.img, ref.img, idx_m, cfg.dist_type, ctx.device)
        return NeighbourTerms(
            self._d_mm(ctx, q),
            prox_n,
            d_ref[idx_n],
            dist_n,
            prox_m,
            d_ref[idx_m],
            dist_m,
            idx_n,
            idx_m,
        )

    def _d_mm(
        self,
        ctx: ScoringContext,
        q: SplitFeatures,
        image_rows: np.ndarray | None = None,
        text_rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """d_mm of the pairs (image of row i, text of row j) of ``q``; of its own pairs by default."""
        i = slice(None) if image_rows is None else image_rows
        j = slice(None) if text_rows is None else text_rows
        img, txt, observed = q.img[i], q.txt[j], np.asarray(q.observed)[j]
        if not self.options.normalize_d1:
            return pair_distance(img, txt, self.options.dist_type)
        prompts = ctx.features.label_prompt_txt
        if prompts is None or ctx.features.task != "classification":
            raise LemonError(
                "--normalize_d1 needs class prompts (a classification dataset, or "
                "label_prompt_txt in the --embeddings npz)."
            )
        d = pair_distance(img[:, None, :], prompts[None, :, :], self.options.dist_type)
        d = np.exp(d - d.max(axis=1, keepdims=True))
        soft = d / d.sum(axis=1, keepdims=True)
        return soft[np.arange(len(img)), observed.astype(np.int64)]

    # ------------------------------------------------------------------ selection and scoring
    def fixed(self) -> dict[str, float]:
        """Hyper-parameters not to search: ablation-forced ones win over command-line ones."""
        return {**self.options.fixed, **self.forced}

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        fixed = self.fixed()
        fallback = {**LEMON_FIX_HPARAMS, **fixed}
        # with the values given, val is not scored here: the run reports their val F1 (selected_val)
        # from the val scores it computes anyway (scoring val twice would double its search)
        if len(fixed) == len(HPARAM_NAMES):
            return {**fixed, "selection": "fixed"}
        if self.options.select and ctx.reviewed is not None and ctx.reviewed.usable:
            return self._fit_reviewed(ctx, ctx.reviewed, fixed)
        val = ctx.features.splits.get("val")
        if not self.options.select or val is None or val.is_mislabel is None:  # no val labels
            reason = "selection switched off" if not self.options.select else "no val labels"
            log.info(
                "no selection (%s): LEMoN_FIX values for the hyper-parameters not given", reason
            )
            return {**fallback, "selection": "lemon_fix"}
        y = val.is_mislabel
        if y.all() or not y.any():
            warnings.warn(
                "the val split has no mislabelled samples or no clean samples: hyper-parameters "
                "cannot be selected; falling back to LEMoN_FIX (val F1 reported as null).",
                stacklevel=2,
            )
            return {**fallback, "selection": "lemon_fix_fallback", "selected_val": None}
        start = time.perf_counter()
        terms = self.terms(ctx, "val")
        best, evaluations = self._select(terms, y, fixed)
        return {
            **best,
            "selection": "lemon_opt",
            "selected_val": float(best_f1(self._combine(terms, best)["score"], y)[0]),
            "selection_s": time.perf_counter() - start,
            "selection_evaluations": evaluations,
        }

    def _fit_reviewed(
        self, ctx: ScoringContext, reviewed: ReviewedLabels, fixed: dict[str, float]
    ) -> dict[str, Any]:
        """LEMoN_OPT on the pairs a person reviewed (``run_lemon --reviewed``), wherever they are in the
        splits: their neighbour terms are computed for those rows only, and the objective is the run-wide
        F1 the reviewed flags and the weighted audit sample estimate (:mod:`lemon.method.reviewed`)."""
        start = time.perf_counter()
        parts = [self.terms(ctx.rows(s, reviewed.rows[s]), s) for s in reviewed.splits]
        terms = NeighbourTerms(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(NeighbourTerms))
        )
        y, weights = reviewed.y, reviewed.weights
        best, evaluations = self._select(terms, y, fixed, weights)
        reached = best_f1(self._combine(terms, best)["score"], y, weights)[0]
        return {
            **best,
            "selection": "lemon_opt_reviewed",
            "selected_val": None,
            "selected_reviewed": float(reached),
            "selection_s": time.perf_counter() - start,
            "selection_evaluations": evaluations,
        }

    def _select(
        self,
        terms: NeighbourTerms,
        y: np.ndarray,
        fixed: dict[str, float],
        weights: np.ndarray | None = None,
    ) -> tuple[dict[str, float], int]:
        """LEMoN_OPT on val: the original's grid, then the search (lemon.method.select) in spread units
        (:meth:`NeighbourTerms.weight_factors`) from its best points and the original's starting points;
        float32 while searching (twice as fast), float64 for the final choice. Never below the grid.
        ``weights``: how many pairs each labelled one stands for (reviewed pairs), else 1."""
        free = [i for i, n in enumerate(HPARAM_NAMES) if n not in fixed]
        spread = float(np.std(terms.d_mm)) if self.use_d_mm else 1.0
        scale = spread or 1.0
        unit = (None if "beta" in fixed else scale, None if "gamma" in fixed else scale)
        evaluations = [0]

        def f1(H: np.ndarray, dtype: str, in_units: bool) -> np.ndarray:
            evaluations[0] += len(H)
            return best_f1(
                terms.scores(H, self.use_d_mm, dtype, unit if in_units else (None, None)),
                y,
                weights,
            )[0]

        def exact(H: np.ndarray) -> np.ndarray:
            return np.atleast_1d(f1(terms.to_weights(H, unit), "float64", False))

        grid = SearchSpace(HPARAM_NAMES, GRID, TIED, fixed).grid_points()
        grid_f1 = batched(lambda H: f1(H, "float32", False), grid)
        originals = np.tile(SearchSpace(HPARAM_NAMES, GRID, fixed=fixed).base(), (3, 1))
        originals[:, free] = np.array([[0.5], [1.0], [10.0]])  # the original's optimiser starts
        starts = np.concatenate([grid[distinct_best(grid, grid_f1, 8)], originals])
        space = SearchSpace(HPARAM_NAMES, UNIT_GRID, TIED, fixed, UNIT_SCALE, pooled=POOLED)
        with _one_torch_thread():
            found, value = search(
                lambda H: f1(H, SEARCH_DTYPE, True),
                space,
                seed=self.options.seed,
                effort=min(MAX_EFFORT, 1500 / len(y)),
                extra_starts=(),
                starts=terms.from_weights(starts, unit),
                exact=exact,
                budget=self.options.search_budget,
            )
        best = terms.to_weights(np.array([found[n] for n in HPARAM_NAMES]), unit)[0]
        grid_best = grid[int(np.argmax(grid_f1))]
        if f1(grid_best[None], "float64", False)[0] > value:
            best = grid_best
        return dict(zip(HPARAM_NAMES, best.tolist())), evaluations[0]

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        t = self.terms(ctx, split)
        fix = suggest(ctx, split, hparams, t.prox_n, t.trd_n, t.idx_n)
        return {**self._combine(t, hparams), **fix, "idx_n": t.idx_n, "idx_m": t.idx_m}

    def _combine(self, t: NeighbourTerms, hparams: dict[str, Any]) -> dict[str, np.ndarray]:
        """score = d_mm + beta * s_n + gamma * s_m (d_mm left out by the d1 ablation), with its terms."""
        h = {n: float(hparams[n]) for n in HPARAM_NAMES}
        s_n = t.neighbour_term("n", np.array([h["tau_1_n"]]), np.array([h["tau_2_n"]]))[0].numpy()
        s_m = t.neighbour_term("m", np.array([h["tau_1_m"]]), np.array([h["tau_2_m"]]))[0].numpy()
        score = (t.d_mm if self.use_d_mm else 0.0) + h["beta"] * s_n + h["gamma"] * s_m
        return {
            "score": np.asarray(score, dtype=np.float64),
            "d_mm": t.d_mm,
            "s_n": s_n,
            "s_m": s_m,
        }

    def score_mismatched(
        self,
        ctx: ScoringContext,
        split: str,
        image_rows: np.ndarray,
        text_rows: np.ndarray,
        hparams: dict[str, Any],
    ) -> np.ndarray:
        """Mismatched pairs (image of row i, text of row j) reusing the real pairs' neighbour lists, with
        no new search: N(x_i) is pair i's image neighbours, M(y_j) pair j's text neighbours (each with
        its own reference row already excluded); only the distances to the swapped text / image are new.
        Equal to scoring the pairs as a split of their own, up to which rows are excluded as self."""
        i, j = np.asarray(image_rows), np.asarray(text_rows)
        if len(i) > MISMATCHED_BLOCK:  # bounded memory: the terms of one block at a time
            return np.concatenate(
                [
                    self.score_mismatched(
                        ctx,
                        split,
                        i[s : s + MISMATCHED_BLOCK],
                        j[s : s + MISMATCHED_BLOCK],
                        hparams,
                    )
                    for s in range(0, len(i), MISMATCHED_BLOCK)
                ]
            )
        cfg, t = self.options, self.terms(ctx, split)
        q, ref = ctx.split(split), ctx.reference
        if cfg.use_discrete_for_text:
            dist_n = (ref.texts[t.idx_n[i]] != q.texts[j][:, None]).astype(np.float64)
        else:
            dist_n = _gather_distance(q.txt[j], ref.txt, t.idx_n[i], cfg.dist_type)
        dist_m = _gather_distance(q.img[i], ref.img, t.idx_m[j], cfg.dist_type)
        swapped = NeighbourTerms(
            self._d_mm(ctx, q, i, j),
            t.prox_n[i],
            t.trd_n[i],
            dist_n,
            t.prox_m[j],
            t.trd_m[j],
            dist_m,
            t.idx_n[i],
            t.idx_m[j],
        )
        return self._combine(swapped, hparams)["score"]
