"""Helpers shared by the sweep, launcher and Slurm tests: tiny experiments and a controllable job script.

``write_module`` puts a Python module into a folder that is on ``sys.path`` (and ``PYTHONPATH``, for
subprocesses and Slurm jobs): an experiment registration or the ``probe`` job script below, whose
``main(argv)`` sleeps, fails, raises or succeeds on request and records what it saw.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # sweep.py, experiments.py and launchers.py live at the repo root
    sys.path.insert(0, str(REPO))

PROBE_SCRIPT = '''
"""A job script for tests: --sleep S, --exit_code N, --raise_error; writes seen.json, then done."""
import argparse, json, multiprocessing, os, time
from pathlib import Path
from lemon.core.io import atomic_write_json, mark_done

def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--output_dir", required=True)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--exit_code", type=int, default=0)
    p.add_argument("--raise_error", action="store_true")
    p.add_argument("--value", default="")
    a = p.parse_args(argv)
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "seen.json", {"pid": os.getpid(), "value": a.value,
                                           "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                           "start_method": multiprocessing.get_start_method()})
    time.sleep(a.sleep)
    if a.raise_error:
        raise RuntimeError("probe asked to raise")
    if a.exit_code:
        print("error: probe asked to fail")
        return a.exit_code
    mark_done(out, a.sleep)
    return 0
'''


def write_module(folder: Path, name: str, source: str) -> str:
    """Write ``<folder>/<name>.py``; return the module name."""
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def experiment_source(name: str, grid: list[dict], script: str = "run_lemon") -> str:
    """Source of a module registering experiment ``name`` with a literal ``grid``."""
    return (
        f"from experiments import EXPERIMENTS, register\nfrom lemon.sweep.grid import Experiment\n"
        f"if {name!r} not in EXPERIMENTS:\n"
        f"    @register\n"
        f"    class E(Experiment):\n"
        f"        name = {name!r}\n"
        f"        script = {script!r}\n"
        f"        def grid(self):\n"
        f"            return {grid!r}\n"
    )


def run_sweep_cli(
    modules: list[str], args: list[str], pythonpath: Path, timeout: float = 300, **popen
) -> subprocess.CompletedProcess | subprocess.Popen:
    """``python sweep.py ARGS`` in a subprocess that first imports ``modules`` (test experiments).

    With ``popen`` options (e.g. start_new_session=True) the process is returned running.
    """
    code = f"import sys, sweep; import {', '.join(modules)}; sys.exit(sweep.main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), str(REPO)])}
    cmd = [sys.executable, "-c", code, *args]
    if popen:
        return subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            **popen,
        )
    return subprocess.run(
        cmd,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
