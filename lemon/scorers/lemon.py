"""The LEMoN score, fully vectorised over whole splits and over batches of hyper-parameters.

score = d_mm + beta * s_n + gamma * s_m, with (for each query pair (x, y), k neighbours j)
  s_n = mean_{j in N(x)} w1(x, x_j; tau_1_n) * exp(-tau_2_n * d(x_j, y_j)) * d(y, y_j)
  s_m = mean_{j in M(y)} w1(y, y_j; tau_1_m) * exp(-tau_2_m * d(x_j, y_j)) * d(x, x_j)
w1 = exp(tau_1 * proximity), proximity = a.b (cosine) or -||a - b||^2 (euclidean), as the original code.
Per split, the (n, k) neighbour terms are computed once; any hyper-parameter vector then costs O(n k).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lemon.errors import LemonError
from lemon.evaluate import best_f1
from lemon.features import SplitFeatures
from lemon.methods import ABLATION_RULES, HPARAM_NAMES, LEMON_FIX_HPARAMS
from lemon.scorers.base import Scorer, ScorerOptions, ScoringContext
from lemon.scorers.registry import SCORERS
from lemon.select import SearchSpace, search

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
_GATHER_ROWS = (
    2**17
)  # neighbour rows gathered at once by _gather_distance (256 MiB of float32 at d=512)

GRID = {
    "beta": np.arange(0, 100.01, 5),
    "gamma": np.arange(0, 100.01, 5),
    "tau_1_n": [0, 1, 5, 10],
    "tau_2_n": [0, 1, 5, 10],
    "tau_1_m": [0, 1, 5, 10],
    "tau_2_m": [0, 1, 5, 10],
}
TIED = (("tau_1_n", "tau_1_m"), ("tau_2_n", "tau_2_m"))
SCALE = {
    "beta": 50.0,
    "gamma": 50.0,
    "tau_1_n": 5.0,
    "tau_2_n": 5.0,
    "tau_1_m": 5.0,
    "tau_2_m": 5.0,
}


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
    ) -> torch.Tensor:
        """(B, n) scores for hyper-parameter rows H (B, 6) in HPARAM_NAMES order.

        Each distinct (tau_1, tau_2) pair of a side is evaluated once, so batches that vary only beta and
        gamma cost O(B n) after the O(n k) neighbour terms.
        """
        import torch

        H = np.asarray(H, dtype=np.float64).reshape(-1, 6)
        total = torch.zeros((len(H), len(self.d_mm)), dtype=getattr(torch, dtype))
        if use_d_mm:
            total += self._t[("d_mm", dtype)]
        for side, w_col, t1_col, t2_col in (("n", 0, 2, 3), ("m", 1, 4, 5)):
            active = H[:, w_col] != 0
            if not active.any():
                continue
            taus, inverse = np.unique(H[active][:, [t1_col, t2_col]], axis=0, return_inverse=True)
            term = self.neighbour_term(side, taus[:, 0], taus[:, 1], dtype)[
                torch.as_tensor(inverse.ravel())
            ]
            weight = torch.as_tensor(H[active, w_col]).to(total.dtype)[:, None]
            if active.all():
                total.addcmul_(weight, term)
            else:
                total[torch.as_tensor(active)] += weight * term
        return total


@SCORERS.register("lemon")
class LemonScorer(Scorer):
    """LEMoN with hyper-parameters selected on val (LEMoN_OPT), fixed (CLI / LEMoN_FIX), or ablated."""

    streamable = True

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        forced, self.use_d_mm = ABLATION_RULES[self.options.ablation]
        self.forced = dict(forced)

    # ------------------------------------------------------------------ per-split terms
    def terms(self, ctx: ScoringContext, split: str) -> NeighbourTerms:
        """The split's neighbour terms, computed once per context (a streamed block has its own)."""
        o = self.options
        key = ("lemon_terms", split, o.k, o.dist_type, o.normalize_d1, o.use_discrete_for_text)
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

    def _d_mm(self, ctx: ScoringContext, q: SplitFeatures) -> np.ndarray:
        if not self.options.normalize_d1:
            return pair_distance(q.img, q.txt, self.options.dist_type)
        prompts = ctx.features.label_prompt_txt
        if prompts is None or ctx.features.task != "classification":
            raise LemonError(
                "--normalize_d1 needs class prompts (a classification dataset, or "
                "label_prompt_txt in the --embeddings npz)."
            )
        d = pair_distance(q.img[:, None, :], prompts[None, :, :], self.options.dist_type)
        d = np.exp(d - d.max(axis=1, keepdims=True))
        soft = d / d.sum(axis=1, keepdims=True)
        return soft[np.arange(len(q)), q.observed.astype(np.int64)]

    # ------------------------------------------------------------------ selection and scoring
    def fixed(self) -> dict[str, float]:
        """Hyper-parameters not to search: ablation-forced ones win over command-line ones."""
        return {**self.options.fixed, **self.forced}

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        fixed = self.fixed()
        fallback = {**LEMON_FIX_HPARAMS, **fixed}
        if len(fixed) == len(HPARAM_NAMES):
            return {**fixed, "selection": "fixed", "selected_val": self._val_f1(ctx, fixed)}
        val = ctx.features.splits.get("val")
        if not self.options.select or val is None or not val.has_labels:
            reason = "selection switched off" if not self.options.select else "no val labels"
            log.info(
                "no selection (%s): LEMoN_FIX values for the hyper-parameters not given", reason
            )
            return {
                **fallback,
                "selection": "lemon_fix",
                "selected_val": self._val_f1(ctx, fallback),
            }
        y = val.is_mislabel
        if y.all() or not y.any():
            warnings.warn(
                "the val split has no mislabelled samples or no clean samples: hyper-parameters "
                "cannot be selected; falling back to LEMoN_FIX (val F1 reported as null).",
                stacklevel=2,
            )
            return {**fallback, "selection": "lemon_fix_fallback", "selected_val": None}
        terms = self.terms(ctx, "val")

        # float32 while searching (twice as fast); the chosen point is re-scored in float64 below
        def objective(H):
            return best_f1(terms.scores(H, self.use_d_mm, "float32"), y)[0]

        space = SearchSpace(
            HPARAM_NAMES,
            GRID,
            TIED,
            fixed,
            SCALE,
            pooled=(("tau_1_n", "tau_2_n"), ("tau_1_m", "tau_2_m")),
        )
        best, _ = search(objective, space, seed=self.options.seed, effort=min(1.0, 1500 / len(y)))
        return {**best, "selection": "lemon_opt", "selected_val": self._val_f1(ctx, best)}

    def _val_f1(self, ctx: ScoringContext, hparams: dict[str, float]) -> float | None:
        val = ctx.features.splits.get("val")
        if val is None or not val.has_labels or val.is_mislabel.all() or not val.is_mislabel.any():
            return None
        return float(best_f1(self.score(ctx, "val", hparams)["score"], val.is_mislabel)[0])

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        t = self.terms(ctx, split)
        h = {n: float(hparams[n]) for n in HPARAM_NAMES}
        s_n = t.neighbour_term("n", np.array([h["tau_1_n"]]), np.array([h["tau_2_n"]]))[0].numpy()
        s_m = t.neighbour_term("m", np.array([h["tau_1_m"]]), np.array([h["tau_2_m"]]))[0].numpy()
        score = (t.d_mm if self.use_d_mm else 0.0) + h["beta"] * s_n + h["gamma"] * s_m
        return {
            "score": np.asarray(score, dtype=np.float64),
            "d_mm": t.d_mm,
            "s_n": s_n,
            "s_m": s_m,
            "idx_n": t.idx_n,
            "idx_m": t.idx_m,
        }
