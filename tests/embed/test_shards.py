"""Sharded embedding (``python -m lemon.embed``): shards run through the sweep launchers (in-process here,
a real Slurm job array in the slurm test), only missing shards run again, and the assembled cache entries
are what a following run_lemon reads: it embeds nothing and scores as an unsharded run does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_data import caption, jpeg_bytes, truncated_jpeg_bytes, write_fake
from tiny_clip import tiny_clip_checkpoint

import run_lemon
from lemon.embed.__main__ import main as embed_main
from lemon.sweep.slurm import slurm_unavailable_reason

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A webdataset CC3M copy (three tars; one JPEG is truncated: it fails only when decoded) and a tiny
    random open_clip checkpoint."""
    import webdataset as wds

    root = tmp_path_factory.mktemp("shards")
    write_fake("cc3m", root / "data")
    rng = np.random.default_rng(9)
    with wds.TarWriter(str(root / "data" / "cc3m" / "cc3m-train-0001.tar")) as sink:
        for i in range(9):
            image = truncated_jpeg_bytes(rng) if i == 4 else jpeg_bytes(rng)
            sink.write({"__key__": f"x{i:04d}", "jpg": image, "txt": caption(i + 7, rng)})
    ckpt = tiny_clip_checkpoint(root / "ckpt")
    return root, ckpt


def _flags(root: Path, ckpt: Path, cache: str) -> list[str]:
    return [
        "--dataset", "cc3m", "--real_dataset", "--noise_level", "0",
        "--data_dir", str(root / "data"), "--cache_dir", str(root / cache),
        "--clip_model", str(ckpt), "--num_workers", "0", "--batch_size", "4",
    ]  # fmt: skip


def _run(root: Path, ckpt: Path, cache: str, out: str) -> tuple[pd.DataFrame, dict]:
    argv = [*_flags(root, ckpt, cache), "--knn_k", "3", "--output_dir", str(root / out)]
    assert run_lemon.main(argv) == 0
    args = json.loads((root / out / "args.json").read_text())
    return pd.read_csv(root / out / "scores.csv"), args


def test_shards_fill_the_cache_a_run_reads_and_only_missing_shards_rerun(data, capsys):
    root, ckpt = data
    shard = [*_flags(root, ckpt, "sharded"), "--shards", "3", "--command_launcher", "debug"]
    assert embed_main(shard) == 0
    out = capsys.readouterr().out
    assert "3 jobs: 0 done" in out and "3 jobs: 3 done" in out
    assert "All 3 shards done; 6 cache entries assembled" in out  # image + text entry per split

    sharded, args = _run(root, ckpt, "sharded", "run_sharded")
    assert args["data"]["cache_misses"] == 0 and args["data"]["cache_hits"] == 6
    assert "loaded" not in (root / "run_sharded" / "log.txt").read_text()  # the model never loaded
    fresh, fresh_args = _run(root, ckpt, "fresh", "run_fresh")
    assert fresh_args["data"]["cache_misses"] == 6
    assert args["data"]["dropped"] == fresh_args["data"]["dropped"]  # the truncated JPEG, both ways
    assert "undecodable image" in json.dumps(args["data"]["dropped"])
    pd.testing.assert_frame_equal(sharded, fresh, check_exact=False, rtol=0, atol=1e-5)

    assert embed_main(shard) == 0  # all done: nothing launched, nothing assembled again
    out = capsys.readouterr().out
    assert "Launching" not in out and "6 cache entries" not in out
    folder = next((root / "sharded" / "embeddings").glob("*/shards/cc3m-*"))
    (folder / "jobs" / "00001" / "done").unlink()  # as if shard 1 had been killed
    assert embed_main(shard) == 0
    out = capsys.readouterr().out
    assert "2 done, 0 running, 1 incomplete" in out and "Launching 1 shard job(s)" in out


def test_a_shard_refuses_to_run_on_changed_data(data, capsys):
    root, ckpt = data
    argv = [*_flags(root, ckpt, "stale"), "--shards", "2", "--shard_index", "0"]
    assert embed_main([*argv, "--output_dir", str(root / "elsewhere")]) == 2
    assert "the data or flags changed" in capsys.readouterr().err


def test_the_embed_command_takes_every_data_flag_of_run_lemon():
    """Shards must read the data as the run that follows does: e.g. --class_names sets the class prompts,
    and a shard job must be given it too."""
    from lemon.data.base import SOURCE_FLAGS
    from lemon.embed.__main__ import _job_args, build_parser

    argv = ["--dataset", "cc3m", "--shards", "2", "--class_names", "names.txt"]
    args = build_parser().parse_args(argv)
    assert all(hasattr(args, flag) for flag in SOURCE_FLAGS)
    assert _job_args(args, "cpu", "fp32")["class_names"] == "names.txt"


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.skipif(slurm_unavailable_reason() is not None, reason="no Slurm")
def test_shards_as_a_slurm_job_array(data, capsys, monkeypatch):
    """Two shards as a real submitit job array on the local Slurm; the run then embeds nothing."""
    root, ckpt = data
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    shard = [*_flags(root, ckpt, "slurm"), "--shards", "2", "--command_launcher", "slurm"]
    assert embed_main([*shard, "--cpus", "1", "--timeout_min", "20"]) == 0
    out = capsys.readouterr().out
    assert "Submitted 2 job(s) to Slurm" in out and "All 2 shards done" in out
    folder = next((root / "slurm" / "embeddings").glob("*/shards/cc3m-*"))
    assert (folder / "jobs" / "00000" / "job_id").read_text().split("_")[1].startswith("0")
    _, args = _run(root, ckpt, "slurm", "run_slurm")
    assert args["data"]["cache_misses"] == 0
