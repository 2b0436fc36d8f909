"""Sweep logic: grids, run-folder hashes, job states read from disk, and the sweep.py commands.

Expected grid sizes are counted by hand from the original LEMoN experiments.py.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import experiment_source, write_module

import sweep
from experiments import EXPERIMENTS
from lemon.core.errors import LemonError, UnknownNameError
from lemon.core.io import mark_done
from lemon.core.processes import local_job_id
from lemon.downstream import DownstreamConfig
from lemon.method.hparams import ABLATIONS, DIST_TYPES
from lemon.run.config import RunConfig, config_from_args
from lemon.sweep import (
    Experiment,
    RunRef,
    State,
    build_jobs,
    expand,
    format_counts,
    read_states,
    refresh_states,
    to_launch,
)
from lemon.sweep.jobs import to_flags, write_job_id
from lemon.train import TrainConfig

# (number of sub-grid combinations) x (common part), from the original grids
EXPECTED_SIZES = {
    "lemon_all": (6 + 2 + 2 + 12 + 4) * (2 * 2 * 8 * 3),
    "lemon_caption_real": 5 * 2,
    "discrepancy_baseline": 8 * 4 * 8 * 3,
    "vary_val_set": 4 * (2 * 2 * 8 * 6 * 3),
    "lemon_caption_vary_noise": 3 * (2 * 9 * 8 * 3) + 3 * (2 * 9 * 1 * 3),
    "lemon_caption_ablations": 2 * 2 * 7 * 8 * 3,
    "lemon_cifar_ablations": 2 * 7 * 8 * 3 * 2,
    "lemon_caption_mimic_clip_scratch": 4 * 2 * 2 * 8 * 3,
    "cc3m_clip_scratch": 1,
    "lemon_cc3m_filter_using_scratch": 2,
    "cc3m_clip_scratch_filtered_from_scratch": 2,
    "cc3m_lemon_fix": 1,
    # caption data x (clip_sim + 4 discrepancy scorers x 7 k + 4 model-based) + classification data x
    # (the same + clip_logits x 4 temperatures + 4 k-free + 5 kNN scorers x 7 k + aum, datamap), x 3 seeds
    "baselines_all": (10 * (1 + 4 * 7 + 4) + 8 * (1 + 4 * 7 + 4 + 4 + 4 + 5 * 7 + 2)) * 3,
    "smoke": 96,
    "smoke_synthetic": 96,
    # every scorer that applies (6 any-task + 12 classification-only + 4 model-based) on 4 classification
    # and 2 captioning datasets, x 3 seeds; downstream: 2 filters per scoring run, plus random and no
    # filter once per dataset and seed
    "downstream_scores": (4 * (6 + 12 + 4) + 2 * (6 + 4)) * 3,
    "downstream": 2 * (4 * (6 + 12 + 4) + 2 * (6 + 4)) * 3 + 2 * 6 * 3,
    # the offline version: the demo (6 any-task scorers) and synthetic (+ 12 classification-only)
    "downstream_demo_scores": (6 + 6 + 12) * 3,
    "downstream_demo": (6 + 6 + 12) * 3 + 2 * 2 * 3,
}
RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)}
DOWNSTREAM_FIELDS = {f.name for f in dataclasses.fields(DownstreamConfig)} - {"output_dir"}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"output_dir", "data", "resume"}


@pytest.fixture(scope="module")
def registry():
    return EXPERIMENTS


def test_expand_subgrids_common_scalars_and_duplicates():
    runs = expand(
        [dict(dataset=["a", "b"], noise=["x", "y"]), dict(dataset="c", k=7)],
        common=dict(k=[1, 2], seed=0),
    )
    assert len(runs) == 2 * 2 * 2 + 1  # the second sub-grid overrides k with one value
    assert dict(dataset="c", k=7, seed=0) in runs
    assert all(r["seed"] == 0 for r in runs)
    assert expand([dict(a=[1, 1, 2])]) == [dict(a=1), dict(a=2)]  # a run listed twice is kept once
    assert expand(dict(a="xy")) == [dict(a="xy")]  # strings are values, not lists of characters
    with pytest.raises(LemonError, match="Grid key 'k' has an empty list"):
        expand(dict(k=[]))


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_paper_grids_have_the_original_sizes(registry, name):
    assert len(registry.get(name)().grid()) == EXPECTED_SIZES[name]


def test_every_experiment_is_tested_and_run_lemon_grids_use_real_flags(registry):
    paper = [n for n in registry.names() if not n.startswith("test_")]
    assert sorted(paper) == sorted(EXPECTED_SIZES)
    for name in paper:
        exp = registry.get(name)()
        for args in exp.grid():
            for key, value in args.items():
                assert not (isinstance(value, str) and value.startswith(("/", "~"))), (
                    name,
                    key,
                    value,
                )
            if exp.script == "train_clip_from_scratch":
                assert set(args) <= TRAIN_FIELDS, (name, set(args) - TRAIN_FIELDS)
            if exp.script == "lemon.downstream":
                assert set(args) <= DOWNSTREAM_FIELDS, (name, set(args) - DOWNSTREAM_FIELDS)
            if exp.script == "run_lemon":
                assert set(args) <= RUN_FIELDS, (name, set(args) - RUN_FIELDS)
                assert args.get("dist_type", "cosine") in DIST_TYPES
                assert args.get("ablation", "none") in ABLATIONS


def test_grid_names_are_registered_datasets_noises_models_and_scorers(registry):
    from lemon.data import DATASETS
    from lemon.embed import EMBEDDERS
    from lemon.noise import NOISES
    from lemon.scorers import SCORERS

    kinds = {"dataset": DATASETS, "noise_type": NOISES, "clip_model": EMBEDDERS, "scorer": SCORERS}
    for name in EXPECTED_SIZES:
        for args in registry.get(name)().grid():
            for key, reg in kinds.items():
                if key in args and not isinstance(args[key], RunRef):
                    assert args[key] in reg, (name, key, args[key])


def test_old_experiment_names_are_aliases(registry):
    assert registry.get("multimodal_knn_cifar_ablations") is registry.get("lemon_cifar_ablations")
    with pytest.raises(
        UnknownNameError, match=r"Unknown experiment 'lemon_al'.*Did you mean 'lemon_all'"
    ):
        registry.get("lemon_al")


def test_cc3m_chain_refers_to_earlier_runs_by_name(registry, tmp_path):
    """train -> score with that model -> retrain on each filter: folders found by experiment name, any root."""
    for root in (tmp_path / "a", tmp_path / "b"):
        (scratch,) = build_jobs(registry.get("cc3m_clip_scratch")(), root, registry)
        scored = build_jobs(registry.get("lemon_cc3m_filter_using_scratch")(), root, registry)
        assert all(
            Path(j.args["clip_model"]) == scratch.run_dir and j.requires == (scratch.run_dir,)
            for j in scored
        )
        refs = build_jobs(registry.get("cc3m_clip_scratch_filtered_from_scratch")(), root, registry)
        assert {Path(j.args["filter_scores"]) for j in refs} == {j.run_dir for j in scored}
        assert all(j.requires == (Path(j.args["filter_scores"]),) for j in refs)
        assert all(j.script == "train_clip_from_scratch" for j in refs + [scratch])

    def hashes(root):
        return sorted(
            j.hash
            for j in build_jobs(
                registry.get("cc3m_clip_scratch_filtered_from_scratch")(), root, registry
            )
        )

    assert hashes(tmp_path / "a") == hashes(tmp_path / "b")  # moving the root orphans nothing


def test_run_ref_must_match_exactly_one_run(registry, tmp_path):
    class Ambiguous(Experiment):
        name = "ambiguous_ref"

        def grid(self):
            return [dict(dataset="x", filt=RunRef("lemon_cc3m_filter_using_scratch"))]

    with pytest.raises(
        LemonError, match="matches 2 runs of experiment 'lemon_cc3m_filter_using_scratch'"
    ):
        build_jobs(Ambiguous(), tmp_path, registry)


def test_job_argv_round_trips_through_run_lemon_parser(registry, tmp_path):
    for job in build_jobs(registry.get("lemon_all")(), tmp_path)[::97]:
        cfg = config_from_args(job.argv())
        for key, value in job.args.items():
            assert getattr(cfg, key) == value, key
        assert cfg.output_dir == str(tmp_path / "lemon_all" / job.hash)


def test_to_flags_bools_none_and_lists():
    assert to_flags({"knn_k": 5, "b": False, "a": True, "c": None, "p": ""}) == [
        "--a",
        "--knn_k",
        "5",
        "--p",
        "",
    ]
    with pytest.raises(LemonError, match="Flag 'knn_k' has the value \\[1, 2\\]"):
        to_flags({"knn_k": [1, 2]})


def test_experiment_contract_fails_at_definition():
    with pytest.raises(TypeError, match="must set a class attribute name"):
        type("NoName", (Experiment,), {"grid": lambda self: []})
    with pytest.raises(TypeError, match="must define grid"):
        type("NoGrid", (Experiment,), {"name": "x"})


class Tiny(Experiment):
    name = "tiny"

    def grid(self):
        return expand(dict(dataset="synthetic", knn_k=[1, 2, 3, 4, 5]))


def test_states_from_disk(tmp_path):
    jobs = build_jobs(Tiny(), tmp_path)
    read_states(jobs)
    assert {j.state for j in jobs} == {State.NOT_LAUNCHED}
    a, b, c, d, e = jobs
    for job in (b, c, d, e):
        job.run_dir.mkdir(parents=True)
    mark_done(b.run_dir, 1.0)
    write_job_id(c.run_dir, local_job_id(os.getpid()))  # this very process: alive
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_job_id(d.run_dir, local_job_id(dead.pid))
    write_job_id(e.run_dir, "4242_7")
    read_states(jobs, slurm_active={"4242_7"})
    assert [j.state for j in jobs] == [
        State.NOT_LAUNCHED,
        State.DONE,
        State.RUNNING,
        State.INCOMPLETE,
        State.RUNNING,
    ]
    assert format_counts(jobs) == "5 jobs: 1 done, 2 running, 1 incomplete, 1 not launched."
    assert to_launch(jobs) == [a, d]
    assert to_launch(jobs, restart_running=True) == [a, c, d, e]
    read_states(jobs, slurm_active=set())  # the Slurm job ended without 'done': crashed
    assert e.state == State.INCOMPLETE


def test_a_stale_local_job_id_is_not_running(tmp_path):
    job = build_jobs(Tiny(), tmp_path)[0]
    job.run_dir.mkdir(parents=True)
    host_id = local_job_id(os.getpid())
    write_job_id(
        job.run_dir, host_id.rsplit(":", 1)[0] + ":1"
    )  # same pid, another start time: recycled
    read_states([job])
    assert job.state == State.INCOMPLETE
    write_job_id(job.run_dir, "local:some-other-host:1:1")
    read_states([job])
    assert job.state == State.INCOMPLETE


def test_slurm_unreachable_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no squeue here
    job = build_jobs(Tiny(), tmp_path)[0]
    job.run_dir.mkdir(parents=True)
    write_job_id(job.run_dir, "77")
    warnings = refresh_states([job])
    assert job.state == State.INCOMPLETE
    assert len(warnings) == 1 and "'squeue' is not installed" in warnings[0]
    assert "scripts/local_slurm.sh start" in warnings[0]


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run ``sweep.main`` on a 4-run test experiment with no stdin; returns (exit code, stdout)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    write_module(
        tmp_path,
        "exp_cli_sweep",
        experiment_source(
            "test_cli_sweep", expand(dict(dataset="synthetic", n_synthetic=400, knn_k=[3, 5, 7, 9]))
        ),
    )
    __import__("exp_cli_sweep")
    root = tmp_path / "out"

    def call(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        code = sweep.main(
            [args[0], "--experiment", "test_cli_sweep", "--output_root", str(root), *args[1:]]
        )
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    call.jobs = lambda: build_jobs(EXPERIMENTS.get("test_cli_sweep")(), root)
    return call


def test_cli_status_and_dummy_launch_touch_nothing(cli):
    code, out = cli("status")
    assert code == 0 and "4 jobs: 0 done, 0 running, 0 incomplete, 4 not launched." in out
    code, out = cli("launch", "--command_launcher", "dummy")
    assert code == 0 and out.count("python -m run_lemon --dataset synthetic --knn_k") == 4
    assert not any(j.run_dir.exists() for j in cli.jobs())


def test_cli_destructive_commands_need_a_yes(cli):
    jobs = cli.jobs()
    for job in jobs[:2]:
        job.run_dir.mkdir(parents=True)
    mark_done(jobs[0].run_dir, 1.0)
    code, out = cli("launch")  # no stdin: treated as "no"
    assert (
        code == 1
        and "About to launch 3 job(s)" in out
        and "nothing launched; pass --skip_confirmation" in out
    )
    assert not jobs[2].run_dir.exists() and jobs[1].run_dir.exists()
    code, out = cli("delete_incomplete")
    assert code == 1 and jobs[1].run_dir.exists()
    code, out = cli("delete_incomplete", "--skip_confirmation")
    assert code == 0 and not jobs[1].run_dir.exists() and jobs[0].run_dir.exists()
    code, out = cli("delete_all", "--skip_confirmation")
    assert code == 0 and "deleted 1 run folder(s)" in out and not jobs[0].run_dir.exists()


def test_cli_notes_ignored_options_and_accepts_output_dir_spelling(cli, tmp_path, capsys):
    code, out = cli("launch", "--command_launcher", "dummy", "--mem_gb", "8")
    assert "note: --mem_gb is not used by the 'dummy' launcher; ignored." in out
    code = sweep.main(
        ["status", "--experiment", "test_cli_sweep", "--output_dir", str(tmp_path / "out")]
    )
    assert code == 0 and "4 jobs:" in capsys.readouterr().out


def test_cli_status_shows_recorded_job_ids(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "PATH", str(tmp_path / "empty")
    )  # no squeue: a Slurm id without 'done' is incomplete
    jobs = cli.jobs()
    for job in jobs[:3]:
        job.run_dir.mkdir(parents=True)
    write_job_id(jobs[0].run_dir, "4242_0")  # a Slurm job that ended without 'done'
    write_job_id(jobs[1].run_dir, "4242_1")  # one that finished
    mark_done(jobs[1].run_dir, 1.0)
    code, out = cli("status", "-v")
    lines = out.splitlines()
    assert code == 0 and "4 jobs: 1 done, 0 running, 2 incomplete, 1 not launched." in out
    assert [line for line in lines if str(jobs[0].run_dir) in line and "[job 4242_0]" in line]
    assert (
        sum(str(jobs[0].run_dir) in line for line in lines) == 2
    )  # the -v line and the 'incomplete:' line
    incomplete = f"incomplete: {jobs[0].run_dir}  [job 4242_0]  (log:"
    assert any(line.strip().startswith(incomplete) for line in lines)
    assert any(
        line.strip().startswith(f"done: {jobs[1].run_dir}  [job 4242_1]  ") for line in lines
    )
    no_id = [line for line in lines if str(jobs[2].run_dir) in line]
    assert len(no_id) == 2 and not any("[job" in line for line in no_id)
    assert sum("[job" in line for line in lines) == 3
    read_states(jobs, slurm_active=set())
    assert (
        str(jobs[0])
        .strip()
        .startswith(f"incomplete: {jobs[0].run_dir}  [job 4242_0]  dataset=synthetic")
    )


def test_cli_bad_output_root_is_one_line(cli, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    for command, root in (("status", afile), ("launch", afile), ("status", afile / "sub")):
        code = sweep.main(
            [
                command,
                "--experiment",
                "test_cli_sweep",
                "--output_root",
                str(root),
                "--skip_confirmation",
            ]
        )
        err = capsys.readouterr().err
        assert (
            code == 2 and err.count("\n") == 1 and err.startswith(f"error: --output_root {root} ")
        )
        assert f"{afile} is a file" in err
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere: make access() answer as for a normal user
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, m, **kw: False if Path(p) == locked else real(p, m, **kw)
        )
    for root in (locked, locked / "sub"):
        code = sweep.main(
            [
                "launch",
                "--experiment",
                "test_cli_sweep",
                "--output_root",
                str(root),
                "--skip_confirmation",
            ]
        )
        err = capsys.readouterr().err
        assert (
            code == 2
            and err.count("\n") == 1
            and "--output_root" in err
            and "is not writable" in err
        )
    assert list(locked.iterdir()) == []
    assert (
        sweep.main(["status", "--experiment", "test_cli_sweep", "--output_root", str(locked)]) == 0
    )


def test_cli_unknown_names_list_the_choices(cli, capsys):
    assert sweep.main(["status", "--experiment", "smok", "--output_root", "x"]) == 2
    assert "Unknown experiment 'smok'. Available: " in capsys.readouterr().err
    code, out = cli("launch", "--command_launcher", "locale")
    assert code == 2 and "Unknown launcher 'locale'" in out and "Did you mean 'local'?" in out


def test_every_job_of_every_experiment_starts(registry, tmp_path):
    """Each job's flags pass the checks its script makes at start (run_lemon: parsing, values, registry
    names and their combination), so no grid fails on the cluster at start."""
    from lemon.sweep.validate import check_job

    bad = {}
    for name in registry.names():
        for job in build_jobs(registry.get(name)(), tmp_path, registry):
            if (err := check_job(job)) is not None:
                bad.setdefault(name, []).append(err)
    assert not bad, {name: (len(errs), errs[0]) for name, errs in bad.items()}


def test_check_job_names_what_would_fail(registry, tmp_path):
    from lemon.sweep.validate import check_job

    class Broken(Experiment):
        name = "broken_grid"

        def grid(self):
            return [
                dict(dataset="demo", knn_k=5),
                dict(dataset="demo", subset_val_set=0),
                dict(dataset="cifar10", noise_type="cat"),
                dict(dataset="mscoco", scorer="clip_logits"),
                dict(dataset="demo", knnk=5),
            ]

    errors = [check_job(job) for job in build_jobs(Broken(), tmp_path)]
    assert errors[0] is None
    assert "subset_val_set must be >= 2 (or -1 for the whole val split), got 0" in errors[1]
    assert "Noise type 'cat' is not supported for dataset 'cifar10'" in errors[2]
    assert "Scorer 'clip_logits' does not work on captioning data" in errors[3]
    assert "unrecognized arguments: --knnk 5" in errors[4] and "Did you mean --knn_k?" in errors[4]


def test_dummy_launcher_exits_non_zero_naming_invalid_jobs(tmp_path, capsys):
    write_module(
        tmp_path,
        "bad_grid_mod",
        experiment_source(
            "test_bad_grid", [dict(dataset="synthetic"), dict(dataset="synthetic", dist_type="l1")]
        ),
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import bad_grid_mod  # noqa: F401

        argv = ["launch", "--experiment", "test_bad_grid", "--output_root", str(tmp_path / "runs")]
        assert sweep.main([*argv, "--command_launcher", "dummy"]) == 2
    finally:
        sys.path.remove(str(tmp_path))
    _, err = capsys.readouterr()
    assert err.count("\n") >= 2 and "1 of 2 job(s) would fail at start" in err
    assert "Unknown dist_type 'l1'" in err
    assert not (tmp_path / "runs" / "test_bad_grid").exists()  # a dry run writes nothing
