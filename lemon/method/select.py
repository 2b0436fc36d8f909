"""Hyper-parameter search on val (LEMoN_OPT): grid, random and evolutionary exploration, refinement, polish.

The objective is any batched function ``H (B, P) -> value (B,)`` (for LEMoN: val F1 at its exact best
threshold); an optional ``exact`` objective (LEMoN: the same in float64) judges the final candidates. Phases,
all seeded and deterministic:
1. the grid (for LEMoN the original's: beta, gamma in {0, 5, ..., 100}, each tau in {0, 1, 5, 10} shared
   between the n and m terms);
2. log-uniform random points (with some exact zeros) over [1e-3, 2] x each parameter's scale; ``pooled``
   groups (e.g. the (tau_1_n, tau_2_n) pair) draw from a small pool of tuples so an objective that caches
   per group stays cheap;
3. differential evolution (scipy, one batched call per generation) seeded with the best distinct points so
   far: F1 is piecewise constant with many small plateaus, and a population crosses between basins where
   local moves stall;
4. from the best distinct points, the caller's ``starts`` and the original's starting points (all free
   values 0.5, 1 or 10): rounds of dense coordinate line searches and random multiplicative perturbations
   at several step sizes, until two rounds bring nothing;
5. a continuous polish of the best few refined points: Nelder-Mead (scipy, as the original also used) on
   the exact objective, from two initial simplex sizes.
All values are non-negative, as the paper states, and at most MAX_FACTOR x their scale. ``budget``
multiplies the exploration (random points, evolution population) and the number of refined and
polished points; each refinement and polish runs to convergence whatever the budget.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

Objective = Callable[[np.ndarray], np.ndarray]
#: refinement stays within [0, MAX_FACTOR x scale] (LEMoN: tau <= 50): far past the original's grid
#: (tau <= 10), yet exp(tau_1 * similarity) stays finite in float32
MAX_FACTOR = 10.0
#: evolution: population per unit of effort x budget, and generations
POPULATION, GENERATIONS = 40, 60
#: refined starts per unit of effort; polished candidates; Nelder-Mead evaluations per simplex
N_STARTS, N_POLISH, POLISH_EVALUATIONS = 8, 3, 240


@dataclass
class SearchSpace:
    """Parameters, grid values, grid ties, fixed values, typical scales and pooled groups."""

    names: Sequence[str]
    grid: Mapping[str, Sequence[float] | np.ndarray]
    tied: Sequence[tuple[str, ...]] = ()
    fixed: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    pooled: Sequence[tuple[str, ...]] = ()

    def free(self) -> list[str]:
        return [n for n in self.names if n not in self.fixed]

    def base(self) -> np.ndarray:
        return np.array([float(self.fixed.get(n, 0.0)) for n in self.names])

    def upper(self) -> np.ndarray:
        """(P,) the largest value each parameter may take (MAX_FACTOR x its scale)."""
        return MAX_FACTOR * np.array([float(self.scale.get(n, 1.0)) for n in self.names])

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


def batched(objective: Objective, points: np.ndarray, batch: int = 512) -> np.ndarray:
    """``objective`` over ``points`` in batches of at most ``batch`` rows."""
    return np.concatenate([objective(points[i : i + batch]) for i in range(0, len(points), batch)])


def distinct_best(points: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best distinct rows of ``points`` by ``values`` (ties: the earlier row)."""
    _, first = np.unique(points, axis=0, return_index=True)
    return first[np.lexsort((first, -values[first]))][:n]


def search(
    objective: Objective,
    space: SearchSpace,
    seed: int = 0,
    effort: float = 1.0,
    extra_starts: Sequence[float] = (0.5, 1.0, 10.0),
    batch: int = 512,
    starts: np.ndarray | None = None,
    exact: Objective | None = None,
    budget: float = 1.0,
) -> tuple[dict[str, float], float]:
    """Maximise ``objective`` over ``space``; returns (best values by name, best ``exact`` value).

    ``effort`` in (0, 1] scales the work to the cost of one evaluation (large val sets need fewer points
    for the same precision and each costs more); ``budget`` multiplies the exploration. ``starts`` (S, P)
    are refined too; ``exact`` (default: ``objective``) ranks the polished candidates.
    """
    rng = np.random.default_rng(seed)
    exact = exact or objective
    free_cols = [space.names.index(n) for n in space.free()]
    points = space.grid_points()
    if not free_cols:
        values = batched(objective, points, batch)
        best = points[int(np.argmax(values))]
        return dict(zip(space.names, best.tolist())), float(exact(best[None])[0])
    scale_effort = effort * budget
    points = np.concatenate([points, space.random_points(max(500, int(4000 * scale_effort)), rng)])
    values = batched(objective, points, batch)
    evolved, evolved_values = _evolve(objective, space, points, values, scale_effort, seed, batch)
    points = np.concatenate([points, evolved])
    values = np.concatenate([values, evolved_values])
    log.info("grid + random + evolution: %d points, best objective %.4f", len(points), values.max())

    n_starts = max(2, round(N_STARTS * scale_effort))
    firsts = [points[i] for i in distinct_best(points, values, n_starts)]
    for value in extra_starts:
        x = space.base()
        x[free_cols] = value
        firsts.append(x)
    if starts is not None:
        firsts += list(np.asarray(starts, dtype=np.float64))
    scale = np.array([float(space.scale.get(n, 1.0)) for n in space.names])
    upper = space.upper()
    pooled_cols = [
        [space.names.index(n) for n in group if n in space.free()] for group in space.pooled
    ]
    refined, refined_values = [], []
    for x in tqdm(firsts, desc="refine hyper-parameters", leave=False, disable=None):
        x = x.copy()
        x[free_cols] = np.clip(x[free_cols], 0.0, upper[free_cols])
        x, v = _refine(
            objective,
            x,
            float(objective(x[None])[0]),
            free_cols,
            scale,
            upper,
            max(64, int(256 * effort)),
            rng,
            batch,
            [cols for cols in pooled_cols if cols],
        )
        refined.append(x)
        refined_values.append(v)
    candidates = np.array(refined)
    best_x, best_v = candidates[0], -np.inf
    n_polish = max(1, round(N_POLISH * budget))
    for i in distinct_best(candidates, np.array(refined_values), n_polish):
        x, v = polish(exact, candidates[i], free_cols, upper)
        if v > best_v:
            best_x, best_v = x, v
    log.info("refined %d starts, polished %d: best %.4f", len(firsts), n_polish, best_v)
    return dict(zip(space.names, best_x.tolist())), best_v


def _evolve(
    objective: Objective,
    space: SearchSpace,
    points: np.ndarray,
    values: np.ndarray,
    scale_effort: float,
    seed: int,
    batch: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Differential evolution over the free parameters, its population seeded with the best distinct
    ``points``; returns the final population (M, P) and its objective values."""
    from scipy.optimize import differential_evolution

    free_cols = [space.names.index(n) for n in space.free()]
    upper = space.upper()[free_cols]
    size = max(20, round(POPULATION * scale_effort))
    init = np.clip(points[distinct_best(points, values, size)][:, free_cols], 0.0, upper)
    if len(init) < 5:  # scipy needs at least five members
        return points[:0], values[:0]
    base = space.base()

    def embed(z: np.ndarray) -> np.ndarray:
        full = np.tile(base, (len(z), 1))
        full[:, free_cols] = z
        return full

    result = differential_evolution(
        lambda z: -batched(objective, embed(z.T), batch),  # scipy passes (dims, members)
        list(zip(np.zeros(len(upper)), upper)),
        init=init,
        maxiter=GENERATIONS,
        vectorized=True,
        updating="deferred",
        polish=False,
        tol=-1.0,  # never stop early: F1 plateaus make the population's spread vanish
        seed=seed,
    )
    return embed(result.population), -result.population_energies


def polish(
    exact: Objective,
    x0: np.ndarray,
    free_cols: Sequence[int],
    upper: np.ndarray,
    max_evaluations: int | None = None,
) -> tuple[np.ndarray, float]:
    """Nelder-Mead (scipy) on ``exact`` over the free parameters from ``x0``, with initial simplices of
    20% and 5% of each value; returns the best point seen and its value (never worse than ``x0``)."""
    from scipy.optimize import minimize

    free = np.asarray(free_cols)
    lo, hi = np.zeros(len(free)), upper[free]

    def point(z: np.ndarray) -> np.ndarray:
        x = x0.copy()
        x[free] = np.clip(z, lo, hi)
        return x

    best_x, best_v = x0.copy(), float(exact(x0[None])[0])
    z0 = x0[free]
    for relative in (0.2, 0.05):
        step = np.where(z0 > 0, relative * z0, relative * 0.01 * hi)
        simplex = np.vstack([z0, z0 + np.diag(step)])
        result = minimize(
            lambda z: -float(exact(point(z)[None])[0]),
            z0,
            method="Nelder-Mead",
            bounds=list(zip(lo, hi)),
            options={
                "initial_simplex": simplex,
                "maxfev": max_evaluations or POLISH_EVALUATIONS,
                "xatol": 1e-6,
                "fatol": 0.0,
            },
        )
        if -result.fun > best_v:
            best_x, best_v = point(result.x), -float(result.fun)
    return best_x, best_v


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
    rounds: int = 8,
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
            tv = batched(objective, trial, batch)
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
        tv = batched(objective, trial, batch)
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
