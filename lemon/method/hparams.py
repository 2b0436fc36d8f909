"""What defines the LEMoN method, shared by the configuration, the scorers and the API.

Kept below all of them (it imports nothing of the project but the errors), so that the configuration can
list the choices of ``--ablation`` and ``--dist_type`` without importing a scorer, and a scorer can read
the paper's fixed settings without importing the configuration.
"""

from __future__ import annotations

from lemon.core.errors import LemonError

#: LEMoN's six hyper-parameters, in the column order of every hyper-parameter matrix
HPARAM_NAMES: tuple[str, ...] = ("beta", "gamma", "tau_1_n", "tau_2_n", "tau_1_m", "tau_2_m")
DIST_TYPES: tuple[str, ...] = ("cosine", "euclidean")
#: the original run_lemon's default k (a dataset may set its own; LEMoN_FIX uses 30)
DEFAULT_KNN_K = 5
#: the paper's fixed setting LEMoN_FIX: usable without any labelled row
LEMON_FIX_K = 30
LEMON_FIX_HPARAMS: dict[str, float] = {
    "beta": 5.0,
    "gamma": 5.0,
    "tau_1_n": 0.1,
    "tau_2_n": 5.0,
    "tau_1_m": 0.1,
    "tau_2_m": 5.0,
}

_ZERO_TAU = {"tau_1_n": 0.0, "tau_1_m": 0.0, "tau_2_n": 0.0, "tau_2_m": 0.0}
#: ablation -> (hyper-parameters forced to a value, whether d_mm is part of the score)
ABLATION_RULES: dict[str, tuple[dict[str, float], bool]] = {
    "none": ({}, True),
    "tau_1": ({"tau_1_n": 0.0, "tau_1_m": 0.0}, True),
    "tau_2": ({"tau_2_n": 0.0, "tau_2_m": 0.0}, True),
    "tau_1_2": (dict(_ZERO_TAU), True),
    "beta": ({"beta": 0.0}, True),
    "gamma": ({"gamma": 0.0}, True),
    "d1": ({"beta": 1.0}, False),
    "only_beta": ({"beta": 1.0, "gamma": 0.0, **_ZERO_TAU}, True),
    "only_gamma": ({"beta": 0.0, "gamma": 1.0, **_ZERO_TAU}, True),
    "multimodal_baseline": ({"beta": 0.0, "gamma": 0.0, **_ZERO_TAU}, True),
}
ABLATIONS: tuple[str, ...] = tuple(ABLATION_RULES)


def check_hparam_names(names: object) -> None:
    """Refuse hyper-parameter names LEMoN does not have, listing the valid ones."""
    unknown = sorted(set(names) - set(HPARAM_NAMES))  # type: ignore[call-overload]
    if unknown:
        raise LemonError(f"Unknown hparams {unknown}; allowed: {', '.join(HPARAM_NAMES)}.")
