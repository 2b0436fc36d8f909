"""Every benchmark the docs quote runs on the current code, at its smallest size.

Benchmarks reach into the library's seams (scorers, contexts, options), so a refactor can break one while
the test suite stays green; each runs here as its page tells a reader to run it, on a few hundred pairs,
and must finish and print its table. The numbers themselves are not checked: they are measured, not
asserted (docs/benchmarks.md). Slow: CI runs them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_NOISE = ROOT / "tests" / "fixtures" / "real-noise" / "cifar10n-aggre-swin-5k.npz"

SMALL = {
    "bench_scoring": ["--sizes", "600"],
    "bench_scale": ["--sizes", "2000", "--backends", "torch"],
    "bench_knn": ["--queries", "500", "--reference", "1000", "--backends", "torch"],
    "bench_suggest": ["--speed", "2000"],
    "bench_label_free": ["--only", "synthetic", "--modes", "FIX"],
    "bench_reviewed": ["--embeddings", str(REAL_NOISE), "--flags", "50", "--audit", "50"],
    "bench_detector": ["--n_a", "2000", "--n_new", "500", "--check_own", "100"],
    "bench_embed": ["--n", "16", "--batch_size", "8", "--num_workers", "0"],
    "compare_methods": ["--sources", "small-cos"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_benchmark_runs(name, tmp_path):
    args = [*SMALL[name]]
    if name in {"bench_scale", "bench_label_free", "bench_reviewed", "bench_detector"}:
        args += ["--output_root", str(tmp_path / "runs")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the benchmark printed nothing"


def test_every_benchmark_is_covered():
    """A new benchmark gets a small run above, or a reason here why it cannot have one."""
    too_long = {
        "bench_train_clip": "trains a CLIP per fold (minutes); its recipe is tested in tests/train",
        "bench_sweep": "launches the 96-run smoke grid; the launchers are tested in tests/sweep",
        "bench_report": "drives Chromium over a generated 100,000-pair report; the page is tested in "
        "tests/report",
    }
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert scripts == set(SMALL) | set(too_long)
