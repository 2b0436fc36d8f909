"""Shared fixtures: the original implementation's reference outputs and small synthetic runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_DIR = FIXTURES / "reference"
SMALL_REFERENCES = ("small-cos", "small-euc", "small-disc")

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Reference:
    """One reference case: inputs, the original's per-sample outputs and its selected results.

    ``inputs``: the folder's inputs.npz or, when it has none (N2000), ``inputs`` given as arrays and saved
    to ``inputs_path`` by the caller.
    """

    def __init__(
        self, folder: Path, inputs: dict | None = None, inputs_path: Path | None = None
    ) -> None:
        self.name = folder.name
        self.inputs_path = inputs_path or folder / "inputs.npz"
        if inputs is None:
            with np.load(self.inputs_path) as z:
                inputs = {k: z[k] for k in z.files}
        self.inputs = inputs
        with np.load(folder / "orig_outputs.npz") as z:
            self.outputs = {k: z[k] for k in z.files}
        self.results = json.loads((folder / "orig_results.json").read_text())
        self.config = self.results["config"]
        self.hparams = {
            k: float(self.results["selected_hparams"][k])
            for k in ("beta", "gamma", "tau_1_n", "tau_2_n", "tau_1_m", "tau_2_m")
        }

    def rows(self, split: str) -> np.ndarray:
        return self.outputs["sset"] == split

    def run_config(self, **overrides):
        from lemon.run.config import RunConfig

        discrete = self.config["use_discrete_for_text"]
        kwargs = dict(
            output_dir="unused",
            dataset="embeddings",
            embeddings=str(self.inputs_path),
            knn_k=self.config["knn_k"],
            dist_type=self.config["dist_type"],
            use_discrete_for_text=discrete,
            legacy_discrete_weighting=discrete,
        )
        kwargs.update(overrides)
        return RunConfig.from_flags(kwargs)


def scorer_from_config(cfg):
    """The scorer a run of ``cfg`` builds (its options resolved as the pipeline resolves them)."""
    from lemon.run.load import resolve_k
    from lemon.run.stages import scorer_options
    from lemon.scorers import SCORERS

    return SCORERS.get(cfg.scorer)(scorer_options(cfg, resolve_k(cfg)))


@pytest.fixture(params=SMALL_REFERENCES)
def reference(request) -> Reference:
    return Reference(REFERENCE_DIR / request.param)


@pytest.fixture
def n2000(tmp_path) -> Reference:
    """The N2000 reference: the original's outputs are vendored; its inputs are what the synthetic
    generator draws for n=2000 (bit-identical to the reference's inputs.npz, which is 10 MB)."""
    from lemon.data.synthetic import make_synthetic_embeddings

    inputs = make_synthetic_embeddings(2000)
    np.savez(tmp_path / "inputs.npz", **inputs)
    return Reference(REFERENCE_DIR / "N2000", inputs, tmp_path / "inputs.npz")


@pytest.fixture
def small_npz(tmp_path) -> Path:
    """A small classification embeddings npz (synthetic, 400 reference pairs)."""
    from lemon.data.synthetic import make_synthetic_embeddings

    path = tmp_path / "small.npz"
    np.savez(path, **make_synthetic_embeddings(400))
    return path


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run in CI (CI=true, as .ci/run sets) or with LEMON_SLOW_TESTS=1; a plain
    ``python -m pytest -q`` on a laptop skips them, saying how to run them."""
    if (
        os.environ.get("CI", "").lower() in ("1", "true")
        or os.environ.get("LEMON_SLOW_TESTS") == "1"
    ):
        return
    skip = pytest.mark.skip(reason="slow: runs in CI; set LEMON_SLOW_TESTS=1 to run it here")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
