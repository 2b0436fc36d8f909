"""Shared fixtures: the original implementation's reference outputs and small synthetic runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE_DIR = FIXTURES / "reference"
SHARED_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
SMALL_REFERENCES = ("small-cos", "small-euc", "small-disc")

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Reference:
    """One reference case: inputs, the original's per-sample outputs and its selected results."""

    def __init__(self, folder: Path) -> None:
        self.name = folder.name
        self.inputs_path = folder / "inputs.npz"
        with np.load(folder / "inputs.npz") as z:
            self.inputs = {k: z[k] for k in z.files}
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
        from lemon.config import RunConfig

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
        return RunConfig(**kwargs)


@pytest.fixture(params=SMALL_REFERENCES)
def reference(request) -> Reference:
    return Reference(REFERENCE_DIR / request.param)


@pytest.fixture
def n2000() -> Reference:
    folder = SHARED_REFERENCE / "N2000"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present (the shared reference folder beside the repo)")
    return Reference(folder)


@pytest.fixture
def small_npz(tmp_path) -> Path:
    """A small classification embeddings npz (synthetic, 400 reference pairs)."""
    from lemon.data.synthetic import make_synthetic_embeddings

    path = tmp_path / "small.npz"
    np.savez(path, **make_synthetic_embeddings(400))
    return path
