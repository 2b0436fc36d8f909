"""Launchers: process isolation, failures reported with their log, parallel slots and GPU pinning, and the
reliability contract (kill -9 of a job or of the launcher -> INCOMPLETE, never a half result read as done;
``launch`` again finishes exactly the missing runs, and once more launches nothing).

Most jobs run ``probe`` (tests/sweep_helpers.py), a script that sleeps/fails/raises on request; the kill -9
test runs real ``run_lemon`` jobs on synthetic data.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sweep_helpers import PROBE_SCRIPT, experiment_source, run_sweep_cli, write_module

import sweep
from launchers import LAUNCHERS
from lemon.run.folder import staging_dirs
from lemon.sweep import Experiment, State, build_jobs, launchers, refresh_states
from lemon.sweep.jobs import JOB_OUTPUT, read_job_id
from lemon.sweep.slurm import SlurmError
from lemon.tables.results import load_records


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """Put the probe script on sys.path (and PYTHONPATH); return a factory of probe jobs."""
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(tmp_path, "probe", PROBE_SCRIPT)

    def make(grid: list[dict], root: Path = tmp_path / "out"):
        class Probe(Experiment):
            name = "probe_exp"
            script = "probe"

            def grid(self):
                return grid

        jobs = build_jobs(Probe(), root)
        refresh_states(jobs)
        return jobs

    return make


def _seen(job) -> dict:
    return json.loads((job.run_dir / "seen.json").read_text())


def _wait_for(predicate, timeout: float = 120.0, what: str = "condition", driver=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the sweep exited before {what}:\n{driver.stdout.read()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _launch(name: str, root: Path) -> int:
    return sweep.main(
        ["launch", "--experiment", name, "--output_root", str(root), "--skip_confirmation"]
    )


# the first test starting jobs in this process: its forkserver preloads run_lemon's pipeline
def test_kill_9_of_a_running_job_then_relaunch_finishes_exactly_the_rest(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(tmp_path))
    fast = dict(dataset="synthetic", n_synthetic=400, skip_train=True, skip_hparam_optim=True)
    grid = [
        dict(fast, knn_k=5),
        dict(fast, knn_k=10, skip_hparam_optim=False),
        dict(fast, knn_k=15),
    ]
    mod = write_module(tmp_path, "exp_kill_job", experiment_source("test_kill_job", grid))
    __import__(mod)
    from experiments import EXPERIMENTS

    root = tmp_path / "out"
    jobs = build_jobs(EXPERIMENTS.get("test_kill_job")(), root)
    result = {}
    sweep_thread = threading.Thread(
        target=lambda: result.update(code=_launch("test_kill_job", root))
    )
    sweep_thread.start()
    victim = jobs[1]  # its hyper-parameter search keeps it busy after args.json is written
    job_id = _wait_for(  # a run writes into a staging folder until it finishes
        lambda: (
            any((d / "args.json").exists() for d in staging_dirs(victim.run_dir))
            and read_job_id(victim.run_dir)
        ),
        what="the second job to start",
    )
    os.kill(int(job_id["id"].split(":")[2]), signal.SIGKILL)
    sweep_thread.join(timeout=120)
    out = capsys.readouterr().out
    assert result["code"] == 1, out  # a job failed
    assert "FAILED (killed by signal 9)" in out and str(victim.run_dir) in out
    assert "3 job(s): 2 done, 0 running, 1 incomplete, 0 not launched." in out

    refresh_states(jobs)
    assert [j.state for j in jobs] == [State.DONE, State.INCOMPLETE, State.DONE]
    assert not (victim.run_dir / "done").exists()
    records, report = load_records(root)
    assert len(records) == 2 and report.incomplete == [victim.run_dir]  # never read as a result

    assert _launch("test_kill_job", root) == 0
    out = capsys.readouterr().out
    assert "About to launch 1 job(s)" in out and "Launched 1 job(s): 1 done" in out
    refresh_states(jobs)
    assert all(j.state == State.DONE for j in jobs)
    assert _launch("test_kill_job", root) == 0
    assert "About to launch 0 job(s)" in capsys.readouterr().out
    assert len(load_records(root)[0]) == 3


def test_local_isolates_jobs_and_reports_failures_with_their_log(probe, caplog):
    jobs = probe(
        [
            dict(value="a"),
            dict(value="b", exit_code=3),
            dict(value="c", raise_error=True),
            dict(value="d"),
        ]
    )
    with caplog.at_level(logging.INFO, logger="lemon.sweep"):
        LAUNCHERS.get("local")(jobs)
    refresh_states(jobs)
    assert [j.state for j in jobs] == [State.DONE, State.INCOMPLETE, State.INCOMPLETE, State.DONE]
    pids = [_seen(j)["pid"] for j in jobs]
    assert len(set(pids)) == 4 and os.getpid() not in pids  # one process per job
    assert all(read_job_id(j.run_dir)["id"].split(":")[2] == str(pid) for j, pid in zip(jobs, pids))
    text = caplog.text
    assert "[2/4] FAILED (exit code 3)" in text and "error: probe asked to fail" in text
    assert "[3/4] FAILED (exit code 1)" in text and "RuntimeError: probe asked to raise" in text
    assert f"log: {jobs[2].run_dir / JOB_OUTPUT}" in text
    assert "Traceback (most recent call last)" in (jobs[2].run_dir / JOB_OUTPUT).read_text()
    assert "[4/4] done" in text  # the sweep went on after the failures


def test_local_parallel_fills_its_slots_and_pins_one_gpu_per_worker(probe, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    jobs = probe([dict(value=str(i), sleep=1.5) for i in range(4)])
    LAUNCHERS.get("local_parallel")(jobs, n_workers=2)
    refresh_states(jobs)
    assert all(j.state == State.DONE for j in jobs)
    starts = [(j.run_dir / "seen.json").stat().st_mtime for j in jobs]
    ends = [(j.run_dir / "done").stat().st_mtime for j in jobs]
    overlap = max(sum(s <= t < e for s, e in zip(starts, ends)) for t in starts)
    assert overlap == 2  # two at a time, never more
    gpus = [_seen(j)["cuda"] for j in jobs]
    assert set(gpus) == {"3", "5"}
    assert gpus[0] != gpus[1]  # the first two run together, on different GPUs
    if "fork" in multiprocessing.get_all_start_methods():
        # a job's own workers (DataLoader) fork from it, not from a fresh forkserver that re-imports torch
        assert {_seen(j)["start_method"] for j in jobs} == {"fork"}


def test_debug_runs_in_process_and_goes_on_after_an_exception(probe, caplog):
    jobs = probe([dict(value="x", raise_error=True), dict(value="y")])
    with caplog.at_level(logging.INFO, logger="lemon.sweep"):
        LAUNCHERS.get("debug")(jobs)
    assert _seen(jobs[1])["pid"] == os.getpid()
    assert "RuntimeError: probe asked to raise" in caplog.text and "[2/2] done" in caplog.text


def test_dummy_prints_and_runs_nothing(probe, capsys):
    jobs = probe([dict(value="x")])
    LAUNCHERS.get("dummy")(jobs)
    assert capsys.readouterr().out.startswith("python -m probe --value x --output_dir ")
    assert not jobs[0].run_dir.exists()


def test_slurm_launcher_without_slurm_says_how_to_get_one(probe, tmp_path, monkeypatch):
    jobs = probe([dict(value="x")])
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(
        SlurmError,
        match=r"'sinfo' is not installed; start a local one with "
        "`bash scripts/local_slurm.sh start`",
    ):
        launchers.slurm(jobs, output_root=tmp_path / "out")


def test_kill_9_of_the_launcher_leaves_incomplete_and_not_launched(probe, tmp_path, capsys):
    grid = [dict(value=str(i), sleep=0.5 if i != 1 else 2) for i in range(4)]
    mod = write_module(
        tmp_path, "exp_kill_launcher", experiment_source("test_kill_launcher", grid, "probe")
    )
    __import__(mod)
    from experiments import EXPERIMENTS

    root = tmp_path / "out2"
    jobs = build_jobs(EXPERIMENTS.get("test_kill_launcher")(), root)
    driver = run_sweep_cli(
        [mod],
        [
            "launch",
            "--experiment",
            "test_kill_launcher",
            "--output_root",
            str(root),
            "--skip_confirmation",
        ],
        tmp_path,
        start_new_session=True,
    )
    _wait_for(
        lambda: (jobs[1].run_dir / "seen.json").exists(),
        what="the second job to start",
        driver=driver,
    )
    refresh_states(jobs)
    assert [j.state for j in jobs] == [
        State.DONE,
        State.RUNNING,
        State.NOT_LAUNCHED,
        State.NOT_LAUNCHED,
    ]
    os.killpg(driver.pid, signal.SIGKILL)  # the sweep and everything it started
    driver.communicate(timeout=30)
    _wait_for(
        lambda: refresh_states(jobs) == [] and jobs[1].state != State.RUNNING,
        timeout=10,
        what="the killed job to be gone",
    )
    assert [j.state for j in jobs] == [
        State.DONE,
        State.INCOMPLETE,
        State.NOT_LAUNCHED,
        State.NOT_LAUNCHED,
    ]

    capsys.readouterr()
    assert _launch("test_kill_launcher", root) == 0
    out = capsys.readouterr().out
    assert "About to launch 3 job(s)" in out and "Launched 3 job(s): 3 done" in out
    assert _launch("test_kill_launcher", root) == 0
    assert "About to launch 0 job(s)" in capsys.readouterr().out
