"""Scoring in parts (lemon.scale.parts): the parts of a run assemble to the run scored whole, a rerun scores only
the parts that are not done, and python -m lemon.scale.parts runs them as jobs (local processes, real Slurm)."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

import run_lemon
from lemon.core.io import read_json
from lemon.scale.parts import PartPlan
from lemon.scale.parts.__main__ import main as parts_main
from lemon.sweep.slurm import slurm_unavailable_reason

REPO = Path(__file__).resolve().parents[2]
#: LEMoN_FIX on 1,200 synthetic pairs (train 1200, val 150, test 150), blocks of 64 rows: part boundaries
#: (400, 800 of train; 50, 100 of val and test) fall inside blocks
SYNTHETIC = [
    "--dataset",
    "synthetic",
    "--n_synthetic",
    "1200",
    "--lemon_fix",
    "--stream_block",
    "64",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEMON_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def whole(tmp_path, cache):
    """The run scored whole (neighbours.npz left out, as parts keep none)."""
    out = tmp_path / "whole"
    assert run_lemon.main([*SYNTHETIC, "--save_neighbours", "never", "--output_dir", str(out)]) == 0
    return out


def _metrics(run: Path) -> dict:
    m = read_json(run / "metrics.json")
    return {k: v for k, v in m.items() if not k.startswith(("time/", "parts/"))}


def _launched(parts: int, out: Path, launcher: str) -> list[str]:
    """python -m lemon.scale.parts flags: the synthetic run in ``parts`` parts, run by ``launcher``."""
    return [
        *SYNTHETIC,
        "--score_parts",
        str(parts),
        "--output_dir",
        str(out),
        "--command_launcher",
        launcher,
    ]


def _plan(cache: Path) -> Path:
    (folder,) = (cache / "score_parts").iterdir()
    return folder


@pytest.mark.parametrize("parts", [7, 150], ids=["one_train_row_each", "one_val_row_each"])
def test_parts_cover_every_row_once_in_order(parts):
    plan = PartPlan(Path("."), parts, {"train": 7 if parts == 7 else 1200, "val": 150}, {})
    for split, rows in plan.sizes.items():
        ranges = [plan.rows(split, p) for p in range(plan.parts)]
        assert ranges[0][0] == 0 and ranges[-1][1] == rows
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # contiguous, no overlap
        sizes = [stop - start for start, stop in ranges]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_a_run_scored_in_parts_writes_the_files_of_the_run_scored_whole(tmp_path, cache, whole):
    out = tmp_path / "parts"
    assert run_lemon.main([*SYNTHETIC, "--score_parts", "3", "--output_dir", str(out)]) == 0
    assert (out / "scores.csv").read_bytes() == (whole / "scores.csv").read_bytes()
    assert _metrics(out) == _metrics(whole)
    m = read_json(out / "metrics.json")
    assert m["parts/n"] == 3 and m["parts/scored_here"] == 3
    parts = sorted((_plan(cache) / "parts").iterdir())
    assert [p.name for p in parts] == ["00000", "00001", "00002"]
    assert all((p / "done").is_file() for p in parts)
    with np.load(parts[1] / "train.npz") as z:
        kept = {"score", "d_mm", "s_n", "s_m", "suggested_class", "suggestion_confidence"}
        assert set(z.files) == kept and len(z["score"]) == 400


def test_a_rerun_scores_only_the_parts_not_done(tmp_path, cache, whole):
    out = tmp_path / "parts"
    flags = [*SYNTHETIC, "--score_parts", "3", "--output_dir", str(out)]
    assert run_lemon.main(flags) == 0
    (_plan(cache) / "parts" / "00001" / "done").unlink()  # as if its job had been killed
    assert run_lemon.main([*flags, "--overwrite"]) == 0
    assert read_json(out / "metrics.json")["parts/scored_here"] == 1
    assert (out / "scores.csv").read_bytes() == (whole / "scores.csv").read_bytes()


def test_a_run_finished_from_parts_searches_no_scored_split_again(tmp_path, cache, monkeypatch):
    """With LEMoN_FIX the parts hold every score: finishing the run (at 100M pairs, on one node) searches
    only samples (the label-free rule's, here 40 rows a split), never a whole split again, e.g. to report
    the val F1 of the given hyper-parameters."""
    from lemon.method import labelfree
    from lemon.scorers.base import ScoringContext

    monkeypatch.setattr(labelfree, "MAX_ROWS", 40)
    searched: set[tuple[str, int]] = set()
    neighbours = ScoringContext.neighbours

    def recorded(self, split, space, k):
        searched.add((split, len(self.split(split))))
        return neighbours(self, split, space, k)

    monkeypatch.setattr(ScoringContext, "neighbours", recorded)
    flags = [*SYNTHETIC, "--score_parts", "3", "--output_dir", str(tmp_path / "p")]
    assert run_lemon.main(flags) == 0
    assert {"train", "val", "test"} <= {split for split, _ in searched}  # the parts, scored here
    searched.clear()
    assert run_lemon.main([*flags, "--overwrite"]) == 0
    assert read_json(tmp_path / "p" / "metrics.json")["parts/scored_here"] == 0
    assert searched == {("train", 40), ("val", 40), ("test", 40)}
    hparams = read_json(tmp_path / "p" / "hparams.json")
    assert hparams["selected_val"] == pytest.approx(
        read_json(tmp_path / "p" / "metrics.json")["val/F1_optimal"]
    )


def test_a_run_on_a_plan_another_run_holds_is_refused_in_one_line(tmp_path, cache, capsys):
    """Two runs of the same data and flags share one plan: while one holds it (scoring, waiting for its
    jobs, reading the parts), the other stops with the holder named, and runs once it is free."""
    from lemon.core.lock import RunLock
    from lemon.scale.parts import LOCK

    assert (
        run_lemon.main([*SYNTHETIC, "--score_parts", "3", "--output_dir", str(tmp_path / "a")]) == 0
    )
    folder = _plan(cache)
    capsys.readouterr()
    second = [*SYNTHETIC, "--score_parts", "3", "--output_dir", str(tmp_path / "b")]
    held = RunLock(folder / LOCK, folder).acquire()  # as the other run does
    try:
        assert run_lemon.main(second) == 2
    finally:
        held.release()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"The scoring plan {folder}" in err[0], err
    assert f"in use by another run: pid {os.getpid()}" in err[0]
    assert not (tmp_path / "b" / "done").exists()
    assert run_lemon.main(second) == 0
    assert (tmp_path / "b" / "scores.csv").read_bytes() == (
        tmp_path / "a" / "scores.csv"
    ).read_bytes()
    assert not (folder / LOCK).exists()  # let go when the run ended


def test_parts_scored_with_other_hyper_parameters_are_scored_again(tmp_path, cache, whole):
    out = tmp_path / "parts"
    flags = [*SYNTHETIC, "--score_parts", "3", "--output_dir", str(out)]
    assert run_lemon.main(flags) == 0
    plan_file = _plan(cache) / "plan.json"
    plan = json.loads(plan_file.read_text())
    plan["hparams"]["beta"] = plan["hparams"]["beta"] + 1.0
    plan_file.write_text(json.dumps(plan))
    assert run_lemon.main([*flags, "--overwrite"]) == 0
    assert read_json(out / "metrics.json")["parts/scored_here"] == 3
    assert (out / "scores.csv").read_bytes() == (whole / "scores.csv").read_bytes()


def test_the_selected_hyper_parameters_score_every_part(tmp_path, cache):
    """LEMoN_OPT: the selection runs once, in the run; its hyper-parameters are the plan's."""
    opt = ["--dataset", "synthetic", "--n_synthetic", "800", "--search_budget", "0.2"]
    assert run_lemon.main([*opt, "--output_dir", str(tmp_path / "whole")]) == 0
    assert run_lemon.main([*opt, "--score_parts", "2", "--output_dir", str(tmp_path / "p")]) == 0
    a, b = (
        (tmp_path / "whole" / "scores.csv").read_bytes(),
        (tmp_path / "p" / "scores.csv").read_bytes(),
    )
    assert a == b
    chosen = read_json(tmp_path / "p" / "hparams.json")
    stored = read_json(_plan(cache) / "plan.json")["hparams"]
    assert stored["beta"] == chosen["beta"] and stored["tau_1_m"] == chosen["tau_1_m"]


def test_lemon_parts_runs_each_part_as_a_job_then_finishes_the_run(tmp_path, cache, whole, capsys):
    out = tmp_path / "jobs"
    argv = _launched(3, out, "local")
    assert parts_main(argv) == 0
    printed = capsys.readouterr().out
    assert "Launching 3 part job(s) with 'local'" in printed and "3 done" in printed
    assert (out / "scores.csv").read_bytes() == (whole / "scores.csv").read_bytes()
    assert read_json(out / "metrics.json")["parts/scored_here"] == 0  # all scored by the jobs
    for job in (_plan(cache) / "parts").iterdir():
        assert (job / "job_id").read_text().startswith("local:")  # each was its own process
    # a second command with the same flags launches nothing
    assert parts_main([*argv[:-2], "--command_launcher", "dummy", "--overwrite"]) == 0
    assert "Launching" not in capsys.readouterr().out


def test_a_dry_run_lists_the_part_jobs_and_writes_no_run(tmp_path, cache, capsys):
    out = tmp_path / "dry"
    argv = _launched(2, out, "dummy")
    assert parts_main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        printed.count("python -m lemon.scale.parts.__main__") == 2 and "--part_index 1" in printed
    )
    assert "run is not written" in printed and not out.exists()


def test_a_part_job_launched_into_another_folder_is_refused(tmp_path, cache, capsys):
    assert parts_main(_launched(2, tmp_path / "dry", "dummy")) == 0
    job = [*SYNTHETIC, "--score_parts", "2", "--part_index", "0", "--device", "cpu"]
    assert parts_main([*job, "--precision", "fp32", "--output_dir", str(tmp_path / "x")]) == 2
    assert "the data or flags changed" in capsys.readouterr().err


def test_a_damaged_part_is_named_with_the_fix(tmp_path, cache, capsys):
    flags = [*SYNTHETIC, "--score_parts", "3", "--output_dir", str(tmp_path / "p")]
    assert run_lemon.main(flags) == 0
    part = _plan(cache) / "parts" / "00002"
    np.savez(part / "val.npz", score=np.zeros(3))
    assert run_lemon.main([*flags, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not hold the 50 rows of part 2; delete" in err[0]
    assert str(part) in err[0]
    assert (tmp_path / "p" / "done").is_file()  # the finished run it would have replaced is intact


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--score_parts", "0"], "score_parts must be >= 1"),
        (["--score_parts", "151"], "more than the 150 rows of split 'val'; pass at most 150"),
        (
            ["--score_parts", "2", "--save_neighbours", "always"],
            "cannot be combined with --score_parts",
        ),
        (["--score_parts", "2", "--scorer", "dis_x"], "cannot be scored in parts"),
    ],
)
def test_cuts_that_cannot_be_made_fail_in_one_line(tmp_path, cache, capsys, extra, message):
    argv = [*SYNTHETIC, *extra, "--output_dir", str(tmp_path / "bad")]
    assert run_lemon.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.skipif(slurm_unavailable_reason() is not None, reason="no Slurm")
def test_parts_as_a_slurm_job_array(tmp_path, cache, whole, capsys, monkeypatch):
    """Two parts as a real submitit job array on the local Slurm, then the run finished from them."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "slurm"
    assert parts_main([*_launched(2, out, "slurm"), "--cpus", "1", "--timeout_min", "20"]) == 0
    printed = capsys.readouterr().out
    assert "Submitted 2 job(s) to Slurm" in printed
    assert (out / "scores.csv").read_bytes() == (whole / "scores.csv").read_bytes()
    job_ids = [(p / "job_id").read_text() for p in (_plan(cache) / "parts").iterdir()]
    assert all("_" in i.splitlines()[0] for i in job_ids)  # array task ids
