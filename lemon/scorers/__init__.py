"""SCORERS registry: LEMoN and the baselines, all behind one :class:`~lemon.scorers.base.Scorer` interface."""

from __future__ import annotations

# importing a module registers its scorers
from lemon.scorers import (
    blip,
    cleanlab_scores,
    clip_logits,
    clip_sim,
    clipcleaner,
    deep_knn,
    discrepancy,
    dynamics,
    lemon,
    llava,
    simifeat,
    vdc,
)
from lemon.scorers.registry import SCORERS
