"""lemon.tables.results.load_records: one row per finished run; incomplete / corrupt / empty sweeps reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lemon.core.errors import LemonError
from lemon.tables.results import load_records, method_names

SWEEP = (
    Path(__file__).resolve().parents[1] / "fixtures" / "agg_sweep"
)  # 20 finished runs (see test_aggregate.py)


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A writable copy of the fixture sweep."""
    return Path(shutil.copytree(SWEEP, tmp_path / "sweep"))


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("args.json"))


def test_loads_every_finished_run(sweep):
    df, report = load_records(sweep)
    assert (report.n_runs, report.loaded, report.incomplete, report.corrupt) == (20, 20, [], [])
    assert report.summary() == f"20 run folders under {sweep}: 20 loaded."
    assert len(df) == 20 and df["run_dir"].is_unique
    assert df.groupby("experiment").size().to_dict() == {
        "lemon_all": 10,
        "lemon_caption_vary_noise": 4,
        "lemon_cifar_ablations": 6,
    }
    fix = df[df["lemon_fix"]]
    assert set(fix["knn_k"]) == {30} and set(fix["method"]) == {"lemon_fix"}  # resolved k, not None
    assert set(df["noise_type"]) == {"symmetric"}  # the dataset's default filled in
    assert set(df["noise_level"]) == {0.1, 0.3, 0.4}
    one = df[df["run_dir"] == str(_run_dirs(sweep)[0])].iloc[0]
    metrics = json.loads((Path(one["run_dir"]) / "metrics.json").read_text())
    hparams = json.loads((Path(one["run_dir"]) / "hparams.json").read_text())
    assert (
        one["test/AUROC"] == metrics["test/AUROC"]
        and one["val/F1_optimal"] == metrics["val/F1_optimal"]
    )
    assert one["hp/beta"] == hparams["beta"]
    assert one["hp/threshold_optimal"] == hparams["thresholds"]["optimal"]
    assert not any("/" in c for c in ("dataset", "seed", "knn_k")) and "environment" not in df


def test_incomplete_runs_are_counted_not_loaded(sweep):
    for run in _run_dirs(sweep)[:3]:
        (run / "done").unlink()
    (sweep / "lemon_all" / "launched_only").mkdir()
    (sweep / "lemon_all" / "launched_only" / "log.txt").write_text("started\n")
    df, report = load_records(sweep)
    assert len(df) == report.loaded == 17 and len(report.incomplete) == 4
    assert "4 of 21 runs incomplete" in report.summary() and not report.complete


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("metrics.json", '{"test/AUROC": 0.9, "test/AU', "metrics.json is not valid JSON"),
        ("metrics.json", None, "metrics.json is missing"),
        ("metrics.json", "[]", "metrics.json is not a non-empty JSON object"),
        ("metrics.json", '{"AUROC": {"test": 0.9}}', "metrics.json is not flat"),
        ("args.json", "", "args.json is not valid JSON"),
        ("hparams.json", "{", "hparams.json is not valid JSON"),
    ],
)
def test_corrupt_runs_are_reported_by_path_and_skipped(sweep, name, content, reason):
    victim = _run_dirs(sweep)[5]
    if content is None:
        (victim / name).unlink()
    else:
        (victim / name).write_text(content)
    df, report = load_records(sweep)
    assert len(df) == 19 and str(victim) not in set(df["run_dir"])
    assert [p for p, _ in report.corrupt] == [victim] and report.corrupt[0][1].startswith(reason)
    assert "1 corrupt (skipped)" in report.summary()
    assert f"corrupt: {victim}: {reason}" in report.details()


def _edit_metrics(run: Path, keep) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if keep(k)}))


@pytest.mark.parametrize(
    "keep, missing",
    [
        (lambda k: not k.startswith("test/"), "test/n, test/AUROC, test/AUPRC, test/F1_optimal"),
        (lambda k: k != "test/AUROC", "test/AUROC"),
        (lambda k: k != "val/F1_optimal", "val/F1_optimal"),
    ],
)
def test_partial_metrics_are_corrupt_not_loaded(sweep, caplog, keep, missing):
    victim = _run_dirs(sweep)[3]
    _edit_metrics(victim, keep)
    with caplog.at_level("DEBUG", logger="lemon.tables.results"):
        df, report = load_records(sweep)
    assert len(df) == report.loaded == 19 and str(victim) not in set(df["run_dir"])
    assert [p for p, _ in report.corrupt] == [victim]
    assert report.corrupt[0][1].startswith(
        f"metrics.json is partial: no {missing} (the tables need them)"
    )
    assert "20 run folders" in report.summary() and "19 loaded" in report.summary()
    assert "1 corrupt (skipped)" in report.summary() and not report.complete
    # reported once, by the caller printing report.details(): not also as a logged warning
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert report.details().count(str(victim)) == 1


def test_label_free_run_with_null_metrics_is_not_corrupt(sweep):
    runs = _run_dirs(sweep)
    # a --real_dataset run: no labels, so no prevalence / AUROC / F1 keys, only counts and thresholds
    _edit_metrics(
        runs[0], lambda k: k.split("/")[1] in ("n",) or "threshold" in k or "n_flagged" in k
    )
    metrics = json.loads(
        (runs[1] / "metrics.json").read_text()
    )  # one-class split: AUROC written as null
    (runs[1] / "metrics.json").write_text(json.dumps({**metrics, "test/AUROC": None}))
    df, report = load_records(sweep)
    assert (report.loaded, report.corrupt) == (20, [])
    assert pd.isna(df.set_index("run_dir").loc[str(runs[1]), "test/AUROC"])


def test_empty_and_missing_sweep_folders(tmp_path):
    df, report = load_records(tmp_path)
    assert df.empty and list(df.columns) == ["experiment", "run_dir", "method"]
    assert report.summary().startswith(f"No run folders under {tmp_path}")
    with pytest.raises(LemonError, match=r"Sweep folder .*nope does not exist"):
        load_records(tmp_path / "nope")


def test_hidden_folders_and_flat_layout(tmp_path):
    run = _run_dirs(SWEEP)[0]
    shutil.copytree(run, tmp_path / "single")  # a run directly under the root: no experiment
    shutil.copytree(run, tmp_path / ".submitit" / "x")  # launcher bookkeeping: ignored
    df, report = load_records(tmp_path)
    assert report.n_runs == 1 and df["experiment"].tolist() == [""]


def test_method_names():
    df = pd.DataFrame(
        [
            {"scorer": "lemon", "lemon_fix": False, "ablation": "none"},
            {"scorer": "lemon", "lemon_fix": True, "ablation": "none"},
            {"scorer": "lemon", "lemon_fix": False, "ablation": "tau_1"},
            {"scorer": "lemon", "lemon_fix": False, "ablation": "multimodal_baseline"},
            {"scorer": "lemon", "lemon_fix": False, "ablation": "none", "normalize_d1": True},
            {
                "scorer": "lemon",
                "lemon_fix": False,
                "ablation": "none",
                "use_discrete_for_text": True,
                "legacy_discrete_weighting": True,
            },
            {"scorer": "lemon", "skip_hparam_optim": True, "ablation": "none"},
            {"scorer": "clip_logits", "temperature": 0.01},
            {"scorer": "deep_knn", "temperature": 1.0},
        ]
    )
    assert method_names(df).tolist() == [
        "lemon_opt",
        "lemon_fix",
        "lemon_opt:tau_1",
        "clip_sim",
        "lemon_opt+norm_d1",
        "lemon_opt+discrete_legacy",
        "lemon_skip_optim",
        "clip_logits(T=0.01)",
        "deep_knn",
    ]


def test_run_level_noise_rate_is_the_one_key_without_a_split(sweep):
    runs = _run_dirs(sweep)
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    (runs[0] / "metrics.json").write_text(json.dumps({**metrics, "estimated_noise_rate": 0.4}))
    df, report = load_records(sweep)
    assert (report.loaded, report.corrupt) == (20, [])
    # a result column, so it never joins the config columns that identify a table's rows
    assert df.set_index("run_dir").loc[str(runs[0]), "all/estimated_noise_rate"] == 0.4
    (runs[1] / "metrics.json").write_text(json.dumps({**metrics, "noise_rate": 0.4}))
    df, report = load_records(sweep)
    assert report.loaded == 19 and "key 'noise_rate'" in report.details()
