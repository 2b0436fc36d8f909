"""The ``slurm`` launcher against a real Slurm (start one with ``bash scripts/local_slurm.sh start``).

Skipped, with the reason, when no controller answers ``sinfo``. Jobs are real: a submitit job array of
``run_lemon.main`` on synthetic data, and ``probe`` jobs (tests/sweep_helpers.py) for the running state.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sweep_helpers import PROBE_SCRIPT, REPO, experiment_source, write_module

import sweep
from experiments import EXPERIMENTS
from lemon.sweep import State, build_jobs, refresh_states
from lemon.sweep.jobs import read_job_id
from lemon.sweep.slurm import active_job_ids, slurm_unavailable_reason

_REASON = slurm_unavailable_reason()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(_REASON is not None, reason=f"no Slurm: {_REASON}"),
]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Test modules importable here and in Slurm jobs (sbatch exports this environment)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(REPO)]))
    return tmp_path


def _sweep(capsys, command: str, name: str, root: Path, *extra: str) -> tuple[int, str]:
    code = sweep.main(
        [
            command,
            "--experiment",
            name,
            "--output_root",
            str(root),
            "--skip_confirmation",
            "--command_launcher",
            "slurm",
            *extra,
        ]
    )
    return code, capsys.readouterr().out


def _job_state(job_id: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=False
    ).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "?")


def test_job_array_of_run_lemon_completes_and_a_failure_points_to_its_log(env, capsys):
    fast = dict(dataset="synthetic", n_synthetic=400, skip_train=True, skip_hparam_optim=True)
    write_module(
        env,
        "exp_slurm_array",
        experiment_source("test_slurm_array", [dict(fast, knn_k=5), dict(fast, knn_k=999)]),
    )
    __import__("exp_slurm_array")
    root = env / "out"
    code, out = _sweep(capsys, "launch", "test_slurm_array", root, "--wait", "--cpus", "1")
    good, bad = build_jobs(EXPERIMENTS.get("test_slurm_array")(), root)
    assert code == 1, out  # one job failed
    assert "Submitted 2 job(s) to Slurm" in out and "Slurm array finished: 1 done, 1 failed." in out
    refresh_states([good, bad])
    assert (good.state, bad.state) == (State.DONE, State.INCOMPLETE)
    ids = [read_job_id(j.run_dir)["id"] for j in (good, bad)]
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_0", f"{array}_1"]
    assert [_job_state(i) for i in ids] == ["COMPLETED", "FAILED"]
    log = bad.log_path
    assert f"FAILED: {bad.run_dir}\n    log: {log}" in out
    assert log.parent.parent.parent == root / "test_slurm_array" / ".submitit"
    assert "knn_k=999 but the reference set has 400 samples" in log.read_text()


def test_running_jobs_are_left_alone_restarted_on_request_and_cancelled(env, capsys):
    write_module(env, "probe", PROBE_SCRIPT)
    write_module(
        env,
        "exp_slurm_running",
        experiment_source("test_slurm_running", [dict(value="long", sleep=300)], "probe"),
    )
    __import__("exp_slurm_running")
    root = env / "out"
    (job,) = build_jobs(EXPERIMENTS.get("test_slurm_running")(), root)

    code, out = _sweep(capsys, "launch", "test_slurm_running", root)
    assert code == 0 and "Submitted 1 job(s)" in out
    first = read_job_id(job.run_dir)["id"]
    assert first in active_job_ids()
    refresh_states([job])
    assert job.state == State.RUNNING  # pending or running: squeue lists it

    code, out = _sweep(capsys, "launch", "test_slurm_running", root)
    assert "About to launch 0 job(s)" in out and "1 running job(s) left alone" in out

    code, out = _sweep(capsys, "launch", "test_slurm_running", root, "--restart_running")
    second = read_job_id(job.run_dir)["id"]
    assert code == 0 and second != first
    assert first not in active_job_ids() and second in active_job_ids()
    folders = sorted((root / "test_slurm_running" / ".submitit").iterdir())
    assert len(folders) == 2  # one fresh submitit folder per launch

    code, out = _sweep(capsys, "delete_all", "test_slurm_running", root)
    assert code == 0 and "Cancelled 1 running job(s); deleted 1 run folder(s)." in out
    assert second not in active_job_ids() and not job.run_dir.exists()
