"""Hyper-parameter search on val (LEMoN_OPT): a vectorised grid, then a continuous refinement.

The objective is any batched function ``H (B, P) -> value (B,)`` (for LEMoN: val F1 at its exact best
threshold). The grid is the original's (beta, gamma in {0, 5, ..., 100}; tau_1, tau_2 in {0, 1, 5, 10}
shared between the n and m terms); the refinement, seeded and deterministic, runs coordinate-wise dense line
searches and random local perturbations from the best grid points, over non-negative values as the paper
states. F1 is piecewise constant, so derivative-free batched search suits it better than gradients.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

Objective = Callable[[np.ndarray], np.ndarray]


@dataclass
class SearchSpace:
    """Parameters, their grid values, which of them share a grid value, and fixed values."""

    names: Sequence[str]
    grid: dict[str, Sequence[float]]
    tied: Sequence[tuple[str, ...]] = ()
    fixed: dict[str, float] | None = None
    scale: dict[str, float] | None = None  # typical magnitude per parameter, for the refinement steps

    def free(self) -> list[str]:
        return [n for n in self.names if n not in (self.fixed or {})]

    def vector(self, values: dict[str, float]) -> np.ndarray:
        return np.array([float(values[n]) for n in self.names])

    def grid_points(self) -> np.ndarray:
        """All grid combinations over the free parameters (tied free parameters move together)."""
        free = self.free()
        groups: list[tuple[str, ...]] = []
        for name in free:
            tie = next((t for t in self.tied if name in t), (name,))
            group = tuple(n for n in tie if n in free)
            if group not in groups:
                groups.append(group)
        base = np.array([float((self.fixed or {}).get(n, 0.0)) for n in self.names])
        axes = [self.grid[g[0]] for g in groups]
        points = np.tile(base, (int(np.prod([len(a) for a in axes])) if axes else 1, 1))
        for row, combo in enumerate(itertools.product(*axes)):
            for group, value in zip(groups, combo):
                for n in group:
                    points[row, self.names.index(n)] = value
        return points


def _batched(objective: Objective, points: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([objective(points[i:i + batch]) for i in range(0, len(points), batch)])


def search(objective: Objective, space: SearchSpace, seed: int = 0, n_starts: int = 6,
           rounds: int = 3, n_random: int = 256, batch: int = 512) -> tuple[dict[str, float], float]:
    """Maximise ``objective`` over ``space``; returns (best values by name, best objective value).

    Ties keep the earlier (grid-order, then current) point, so the result is deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    free_cols = [space.names.index(n) for n in space.free()]
    points = space.grid_points()
    values = _batched(objective, points, batch)
    best_i = int(np.argmax(values))
    best_x, best_v = points[best_i].copy(), float(values[best_i])
    log.info("grid: %d points, best objective %.4f", len(points), best_v)
    if not free_cols:
        return dict(zip(space.names, best_x.tolist())), best_v

    order = np.argsort(-values, kind="stable")
    starts: list[np.ndarray] = []
    for i in order:
        if not any(np.array_equal(points[i], s) for s in starts):
            starts.append(points[i].copy())
        if len(starts) == n_starts:
            break
    scale = np.array([float((space.scale or {}).get(n, 1.0)) for n in space.names])
    for x in starts:
        v = float(objective(x[None])[0])
        for _ in range(rounds):
            improved = False
            for c in free_cols:  # dense line search along each free coordinate
                cand = _line_candidates(x[c], scale[c])
                trial = np.tile(x, (len(cand), 1))
                trial[:, c] = cand
                tv = _batched(objective, trial, batch)
                j = int(np.argmax(tv))
                if tv[j] > v:
                    x, v, improved = trial[j].copy(), float(tv[j]), True
            # random local perturbations of all free coordinates at once
            trial = np.tile(x, (n_random, 1))
            step = rng.normal(size=(n_random, len(free_cols)))
            trial[:, free_cols] = np.maximum(
                0.0, trial[:, free_cols] * np.exp(0.3 * step) + 0.1 * scale[free_cols] * rng.normal(
                    size=step.shape))
            tv = _batched(objective, trial, batch)
            j = int(np.argmax(tv))
            if tv[j] > v:
                x, v, improved = trial[j].copy(), float(tv[j]), True
            if not improved:
                break
        if v > best_v:
            best_x, best_v = x.copy(), v
    log.info("refined: best objective %.4f", best_v)
    return dict(zip(space.names, best_x.tolist())), best_v


def _line_candidates(current: float, scale: float) -> np.ndarray:
    """Values to try along one coordinate: a wide non-negative sweep plus a fine one around ``current``."""
    wide = scale * np.concatenate([np.linspace(0, 2, 41), np.geomspace(2.2, 20, 24)])
    local = current * np.linspace(0.5, 1.5, 41) + scale * np.linspace(-0.25, 0.25, 41)
    return np.unique(np.maximum(0.0, np.concatenate([wide, local, [0.0]])))
