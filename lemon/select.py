"""Hyper-parameter search on val (LEMoN_OPT): a vectorised grid, random exploration, then refinement.

The objective is any batched function ``H (B, P) -> value (B,)`` (for LEMoN: val F1 at its exact best
threshold). Phases, all seeded and deterministic:
1. the original's grid (beta, gamma in {0, 5, ..., 100}; tau_1, tau_2 in {0, 1, 5, 10}, each tau shared
   between the n and m terms);
2. log-uniform random points (with some exact zeros) over [1e-3, 2] x each parameter's scale, which reach
   the small values the coarse grid misses; ``pooled`` groups (e.g. the (tau_1_n, tau_2_n) pair) draw from
   a small pool of tuples so an objective that caches per group stays cheap;
3. from the best distinct points and the original's starting points (all free values 0.5, 1 or 10):
   rounds of dense coordinate line searches and random multiplicative perturbations at several step sizes.
All values are non-negative, as the paper states, and at most MAX_FACTOR x their scale. F1 is piecewise
constant in the hyper-parameters, so this batched derivative-free search suits it better than gradients.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

Objective = Callable[[np.ndarray], np.ndarray]
#: refinement stays within [0, MAX_FACTOR x scale] (LEMoN: tau <= 50, beta and gamma <= 500): far past the
#: original's grid (tau <= 10, beta, gamma <= 100), yet exp(tau_1 * similarity) stays finite in float32
MAX_FACTOR = 10.0


@dataclass
class SearchSpace:
    """Parameters, grid values, grid ties, fixed values, typical scales and pooled groups."""

    names: Sequence[str]
    grid: dict[str, Sequence[float]]
    tied: Sequence[tuple[str, ...]] = ()
    fixed: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    pooled: Sequence[tuple[str, ...]] = ()

    def free(self) -> list[str]:
        return [n for n in self.names if n not in self.fixed]

    def base(self) -> np.ndarray:
        return np.array([float(self.fixed.get(n, 0.0)) for n in self.names])

    def grid_points(self) -> np.ndarray:
        """All grid combinations over the free parameters (tied free parameters move together)."""
        free = self.free()
        groups: list[tuple[str, ...]] = []
        for name in free:
            tie = next((t for t in self.tied if name in t), (name,))
            group = tuple(n for n in tie if n in free)
            if group not in groups:
                groups.append(group)
        combos = list(itertools.product(*[self.grid[g[0]] for g in groups]))
        points = np.tile(self.base(), (len(combos), 1))
        for row, combo in enumerate(combos):
            for group, value in zip(groups, combo):
                points[row, [self.names.index(n) for n in group]] = value
        return points

    def random_points(self, n: int, rng: np.random.Generator, pool: int = 64) -> np.ndarray:
        """``n`` log-uniform points over the free parameters (15% exact zeros); pooled groups from ``pool``
        shared tuples."""
        points = np.tile(self.base(), (n, 1))
        free = self.free()

        def draw(names: Sequence[str], size: int) -> np.ndarray:
            scale = np.array([self.scale.get(name, 1.0) for name in names])
            values = scale * np.exp(rng.uniform(np.log(1e-3), np.log(2.0), (size, len(names))))
            return np.where(rng.random(values.shape) < 0.15, 0.0, values)

        done: set[str] = set()
        for group in self.pooled:
            names = [g for g in group if g in free]
            if names:
                tuples = draw(names, pool)
                points[:, [self.names.index(g) for g in names]] = tuples[rng.integers(0, pool, n)]
                done.update(names)
        rest = [g for g in free if g not in done]
        if rest:
            points[:, [self.names.index(g) for g in rest]] = draw(rest, n)
        return points


def _batched(objective: Objective, points: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([objective(points[i : i + batch]) for i in range(0, len(points), batch)])


def search(
    objective: Objective,
    space: SearchSpace,
    seed: int = 0,
    effort: float = 1.0,
    extra_starts: Sequence[float] = (0.5, 1.0, 10.0),
    batch: int = 512,
) -> tuple[dict[str, float], float]:
    """Maximise ``objective`` over ``space``; returns (best values by name, best objective value).

    ``effort`` in (0, 1] scales the random and refinement budgets (large val sets need fewer points for
    the same precision and each point costs more). Ties keep the earlier point: deterministic per seed.
    """
    rng = np.random.default_rng(seed)
    free_cols = [space.names.index(n) for n in space.free()]
    points = space.grid_points()
    if free_cols:
        points = np.concatenate([points, space.random_points(max(500, int(4000 * effort)), rng)])
    values = _batched(objective, points, batch)
    best_i = int(np.argmax(values))
    best_x, best_v = points[best_i].copy(), float(values[best_i])
    log.info("grid + random: %d points, best objective %.4f", len(points), best_v)
    if not free_cols:
        return dict(zip(space.names, best_x.tolist())), best_v

    starts: list[np.ndarray] = []
    for i in np.argsort(-values, kind="stable"):
        if not any(np.array_equal(points[i], s) for s in starts):
            starts.append(points[i].copy())
        if len(starts) == max(2, round(6 * effort)):
            break
    for value in extra_starts:
        x = space.base()
        x[free_cols] = value
        starts.append(x)
    scale = np.array([float(space.scale.get(n, 1.0)) for n in space.names])
    upper = MAX_FACTOR * scale
    n_random = max(64, int(256 * effort))
    pooled_cols = [
        [space.names.index(n) for n in group if n in space.free()] for group in space.pooled
    ]
    for x in tqdm(starts, desc="refine hyper-parameters", leave=False, disable=None):
        x, v = _refine(
            objective,
            x,
            float(objective(x[None])[0]),
            free_cols,
            scale,
            upper,
            n_random,
            rng,
            batch,
            [cols for cols in pooled_cols if cols],
        )
        if v > best_v:
            best_x, best_v = x.copy(), v
    log.info("refined from %d starts: best objective %.4f", len(starts), best_v)
    return dict(zip(space.names, best_x.tolist())), best_v


def _refine(
    objective: Objective,
    x: np.ndarray,
    v: float,
    free_cols: list[int],
    scale: np.ndarray,
    upper: np.ndarray,
    n_random: int,
    rng: np.random.Generator,
    batch: int,
    pooled_cols: Sequence[list[int]] = (),
    rounds: int = 4,
    pool: int = 32,
) -> tuple[np.ndarray, float]:
    """Coordinate line searches + random perturbations until two rounds bring nothing (or ``rounds``).

    Each pooled group of columns takes one of ``pool`` perturbed tuples, so an objective that caches per
    group (LEMoN: one neighbour term per distinct (tau_1, tau_2)) evaluates ``pool`` of them, not ``n_random``.
    """
    stale = 0
    for _ in range(rounds):
        improved = False
        for c in free_cols:
            cand = np.unique(np.minimum(_line_candidates(x[c], scale[c]), upper[c]))
            trial = np.tile(x, (len(cand), 1))
            trial[:, c] = cand
            tv = _batched(objective, trial, batch)
            j = int(np.argmax(tv))
            if tv[j] > v:
                x, v, improved = trial[j].copy(), float(tv[j]), True
        trial = np.tile(x, (n_random, 1))
        size = (n_random, len(free_cols))
        spread = rng.choice([0.03, 0.1, 0.3, 1.0], size=(n_random, 1))  # several step sizes at once
        jitter = 0.01 * spread * scale[free_cols] * rng.normal(size=size)
        trial[:, free_cols] = np.clip(
            trial[:, free_cols] * np.exp(spread * rng.normal(size=size)) + jitter,
            0.0,
            upper[free_cols],
        )
        for cols in pooled_cols:
            trial[:, cols] = trial[rng.integers(0, min(pool, n_random), n_random)][:, cols]
        tv = _batched(objective, trial, batch)
        j = int(np.argmax(tv))
        if tv[j] > v:
            x, v, improved = trial[j].copy(), float(tv[j]), True
        stale = 0 if improved else stale + 1
        if stale == 2:
            break
    return x, v


def _line_candidates(current: float, scale: float) -> np.ndarray:
    """Values to try along one coordinate: a wide non-negative sweep plus a fine one around ``current``."""
    wide = scale * np.concatenate([np.linspace(0, 2, 21), np.geomspace(1e-3, 20, 24)])
    local = current * np.linspace(0.6, 1.4, 17) + scale * np.array([-0.02, 0.0, 0.02])[:, None]
    return np.unique(np.maximum(0.0, np.concatenate([wide, local.ravel(), [0.0]])))
