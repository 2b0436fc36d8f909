"""A 96-run grid (k x distance x ablation x data seed) on the demo dataset, from a cold cache.

Usage:
    python benchmarks/bench_sweep.py                          # experiment 'smoke', local_parallel
    python benchmarks/bench_sweep.py --launcher local --n_workers 1

Launches the sweep through ``sweep.main`` into a fresh output root and a fresh embedding cache (so the
first job trains ``demo_clip`` and embeds; every other job must read the cache), then prints the sweep's
wall time next to the sum of its runs' own times (``time/total_s`` of each metrics.json), how many
embedding files the cache holds (each split's images once; its noisy captions once per noise seed), how
many runs computed embeddings rather than reading them, and what a second ``launch`` does (it must launch 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="smoke")
    parser.add_argument("--launcher", default="local_parallel")
    parser.add_argument(
        "--n_workers", type=int, default=None, help="local_parallel workers (default: CPUs)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the output root and cache (printed)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    workdir = Path(tempfile.mkdtemp(prefix="lemon-bench-sweep-"))
    os.environ["LEMON_CACHE_DIR"] = str(workdir / "cache")  # inherited by every job
    import sweep
    from experiments import EXPERIMENTS
    from lemon.sweep import build_jobs

    launch = [
        "launch",
        "--experiment",
        args.experiment,
        "--output_root",
        str(workdir / "runs"),
        "--command_launcher",
        args.launcher,
        "--skip_confirmation",
    ]
    if args.n_workers and args.launcher == "local_parallel":
        launch += ["--n_workers", str(args.n_workers)]
    start = time.perf_counter()
    code = sweep.main(launch)
    wall = time.perf_counter() - start
    jobs = build_jobs(EXPERIMENTS.get(args.experiment)(), workdir / "runs")
    metrics = [
        json.loads((j.run_dir / "metrics.json").read_text())
        for j in jobs
        if (j.run_dir / "metrics.json").is_file()
    ]
    embedded = [
        json.loads((j.run_dir / "args.json").read_text()).get("data", {})
        for j in jobs
        if (j.run_dir / "args.json").is_file()
    ]
    computed = sum(1 for d in embedded if d.get("cache_misses", 0))
    cache_files = sorted((workdir / "cache" / "embeddings").rglob("*.npy"))
    again = time.perf_counter()
    second = sweep.main(launch)
    again = time.perf_counter() - again
    run_sum = sum(m["time/total_s"] for m in metrics)
    print(f"\n{args.experiment}: {len(jobs)} runs, launcher {args.launcher}, {os.cpu_count()} CPUs")
    print(f"{'sweep wall time':<40} {wall:9.1f} s   (exit code {code})")
    print(f"{'sum of the runs own times':<40} {run_sum:9.1f} s   ({len(metrics)} finished runs)")
    print(
        f"{'slowest run (trains demo_clip, embeds)':<40} {max(m['time/total_s'] for m in metrics):9.1f} s"
    )
    seeds = {str(j.args.get("data_seed", 0)) for j in jobs}
    expected = 3 + 3 * len(
        seeds
    )  # images once per split; noisy captions once per split and noise seed
    print(
        f"{'embedding files in the cache':<40} {len(cache_files):9d}     (expected {expected}: 3 image sets, "
        f"3 caption sets per data seed x {len(seeds)} seeds)"
    )
    print(f"{'runs that computed embeddings':<40} {computed:9d}")
    print(f"{'second launch':<40} {again:9.1f} s   (exit code {second}; it launches nothing)")
    if args.keep:
        print(f"kept: {workdir}")
    else:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if code == 0 and second == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
