"""Nothing a user had is lost or mixed: the bad-input and fault matrix of the command lines.

Each row of ``CASES`` is one case: the state a folder is in before (``prior``), the command run against it,
the exit code, and the one line of error it must print (a regex; ``""`` for a run that prints nothing on
stderr). Every case runs the command as its own process (``reliability_helpers.run_cli``) and checks:

- the exit code, and that stderr is exactly one line matching the pattern (or empty), with no traceback
  on stderr or stdout;
- a failing command leaves everything it was pointed at byte-identical (prior runs keep their files and
  ``done``), and no lock, staging folder or temp file behind;
- a successful one leaves a finished run (``done``) and no leftovers, plus the case's own ``check``.

``how`` runs the command differently where the fault needs it: ``fsize=N`` limits the process's file
size (writes past N bytes fail with the kernel's EFBIG), ``tmpfs=KiB`` / ``tmpfs-ro`` run it on a tmpfs
of that size (a full disk) or a read-only one, in a private mount namespace (skipped where ``unshare``
may not mount). Concurrency (two real processes into one folder), ``kill -9`` during an overwrite, and
the lock and swap mechanics have their own tests below the matrix.

The Python API's bad inputs (``find_label_issues`` on empty arrays, ``known_is_issue`` given as strings,
NaN rows, mismatched lengths) are one-line errors checked in ``tests/api/test_api.py``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reliability_helpers import (
    bind_mount_available,
    finish,
    in_bind_mount,
    in_tmpfs,
    lemon_residue,
    run_cli,
    snapshot,
    start_cli,
    tmpfs_available,
    wait_for,
)

from lemon.core.io import mark_done
from lemon.core.lock import RunLock
from lemon.run import folder as rundir
from lemon.sweep.jobs import JOB_OUTPUT

RUN = "run_lemon --dataset synthetic --n_synthetic 400 --skip_hparam_optim"
IMG = (
    "run_lemon --dataset csv --data_path {data}/pairs.csv --noise_type random --clip_model {ckpt} "
    "--cache_dir {cache} --num_workers 0 --skip_hparam_optim"
)
NPZ = "run_lemon --dataset embeddings --embeddings {tmp}/x.npz --lemon_fix"
#: a user's classification table (image, label) of the assets' pictures, scored without ground truth
LBL = (
    "run_lemon --dataset csv --data_path {tmp}/data/labels.csv --clip_model {ckpt} --cache_dir "
    "{cache} --num_workers 0 --real_dataset --knn_k 5"
)
PAR = LBL.replace("--dataset csv", "--dataset parquet").replace("labels.csv", "labels.parquet")
TREE = (
    "run_lemon --dataset folder --data_path {tmp}/tree --clip_model {ckpt} --cache_dir {cache} "
    "--num_workers 0 --real_dataset --knn_k 5"
)
#: a table of 400 pictures embedded 8 at a time: a run that is still embedding a second after it started
BIG = (
    "run_lemon --dataset csv --data_path {assets}/big/pairs.csv --noise_type random --clip_model "
    "{ckpt} --cache_dir {cache} --num_workers 0 --batch_size 8 --skip_hparam_optim --overwrite"
)
#: 60 labels of three classes, as words (every class prompt repeats 20 times: ties in the text search)
LABELS3 = [("cat", "dog", "bird")[i % 3] for i in range(60)]


# ------------------------------------------------------------------------------------------- assets
@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """Made once: a finished synthetic run (with report), a one-class embeddings run, an image table with
    a tiny CLIP checkpoint, its embedding cache and the run that filled it."""
    from PIL import Image
    from tiny_clip import tiny_clip_checkpoint

    root = tmp_path_factory.mktemp("assets")
    logs = root / "logs"
    done = run_cli(
        "run_lemon", [*RUN.split()[1:], "--output_dir", root / "finished", "--report"], logs
    )
    assert done.rc == 0, done.err
    _write_npz(root / "oneclass.npz", one_class=True)
    done = run_cli(
        "run_lemon",
        [
            "--dataset",
            "embeddings",
            "--embeddings",
            root / "oneclass.npz",
            "--lemon_fix",
            "--output_dir",
            root / "oneclass_run",
        ],
        logs,
    )
    assert done.rc == 0, done.err
    rng = np.random.default_rng(0)
    data = root / "data"
    (data / "pics").mkdir(parents=True)
    rows = []
    for i in range(60):  # 8x8 BMPs: every file has the same size (246 bytes)
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / "pics" / f"{i}.bmp", format="BMP")
        rows.append(
            {"image": f"pics/{i}.bmp", "caption": f"a {('red', 'green', 'blue')[i % 3]} thing {i}"}
        )
    pd.DataFrame(rows).to_csv(data / "pairs.csv", index=False)
    tiny_clip_checkpoint(root / "ckpt", "open_clip")
    done = run_cli("run_lemon", _argv(IMG, root, root / "img_run", root), logs)
    assert done.rc == 0, done.err
    _real_file_assets(root, rng)
    return root


def _real_file_assets(root: Path, rng: np.random.Generator) -> None:
    """The reference runs the real-file cases compare with: the 60 pictures as 8-bit greyscale PNGs
    (their 16-bit twins must score the same), and a 3-class label table (a reordered copy must flag the
    same pairs)."""
    from PIL import Image

    grey = root / "grey"
    (grey / "pics").mkdir(parents=True)
    captions = pd.read_csv(root / "data" / "pairs.csv")["caption"]
    for i in range(60):
        values = rng.integers(0, 256, (12, 12), dtype=np.uint8)
        Image.fromarray(values, "L").save(grey / "pics" / f"{i}.png")
        np.save(grey / "pics" / f"{i}.npy", values)  # what the 16-bit twin is made of
    split = ["train"] * 48 + ["val"] * 6 + ["test"] * 6  # fixed: twins of other bytes split alike
    pd.DataFrame(
        {"image": [f"pics/{i}.png" for i in range(60)], "caption": captions, "split": split}
    ).to_csv(grey / "pairs.csv", index=False)
    done = run_cli(
        "run_lemon",
        _argv(
            IMG.replace("{data}/pairs.csv", str(grey / "pairs.csv")),
            root / "more",  # a cache of their own: the cache cases damage the image run's entries
            root / "grey_run",
            root,
        ),
        root / "logs",
    )
    assert done.rc == 0, done.err
    big = root / "big"
    (big / "pics").mkdir(parents=True)
    for i in range(400):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(big / "pics" / f"{i}.png")
    pd.DataFrame(
        {
            "image": [f"pics/{i}.png" for i in range(400)],
            "caption": [f"picture {i}" for i in range(400)],
        }
    ).to_csv(big / "pairs.csv", index=False)
    _label_table(root, root, LABELS3, name="labels")
    done = run_cli(
        "run_lemon",
        _argv(LBL.replace("{tmp}", str(root)), root / "more", root / "labels_run", root),
        root / "logs",
    )
    assert done.rc == 0, done.err


def _write_npz(path: Path, one_class: bool = False, **changes) -> None:
    """Embeddings npz of the README layout (classification, 3 classes, 8-d); ``changes`` replace arrays."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 60), ("val", 20), ("test", 20)):
        arrays[f"{split}_img"] = rng.normal(size=(n, 8)).astype(np.float32)
        arrays[f"{split}_txt"] = rng.normal(size=(n, 8)).astype(np.float32)
        labels = np.zeros(n, dtype=np.int64) if one_class else np.arange(n) % 3
        arrays[f"{split}_noisy_label"] = labels
        arrays[f"{split}_label"] = labels
    arrays.update(changes)
    np.savez(path, **arrays)


def _argv(template: str, tmp: Path, out: Path, assets: Path) -> list[str]:
    """The flags of a command template (its first word is the module), placeholders filled in."""
    filled = template.format(
        tmp=tmp,
        out=out,
        data=assets / "data",
        cache=tmp / "cache",
        ckpt=assets / "ckpt" / "tiny_open_clip",
        assets=assets,
    )
    words = filled.split()
    return [
        *words[1:],
        *(
            ["--output_dir", str(out)]
            if words[0] == "run_lemon" and "--output_dir" not in words
            else []
        ),
    ]


# ----------------------------------------------------------------------------------- prior states
def _finished(tmp: Path, assets: Path, report: bool = False) -> None:
    shutil.copytree(assets / "finished", tmp / "out")
    if not report:
        (tmp / "out" / "report.html").unlink()
        shutil.rmtree(tmp / "out" / "report_files")
        (tmp / "out" / "flagged.csv").unlink()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stale_lock(tmp: Path) -> None:
    pid = _dead_pid()
    holder = {
        "id": f"local:{socket.gethostname()}:{pid}:1",
        "pid": pid,
        "host": socket.gethostname(),
        "started": "2026-01-01T00:00:00+0000",
        "stage": str(tmp / f".out.lemon-stage-{pid}-abcdef"),
    }
    (tmp / ".out.lemon.lock").write_text(json.dumps(holder))


def _killed(tmp: Path, assets: Path) -> None:
    """What a run killed mid-write leaves: an older run's partial folder with a temp file, a staging folder
    of the killed run beside it, and its lock."""
    out = tmp / "out"
    out.mkdir()
    shutil.copy(assets / "finished" / "args.json", out / "args.json")
    shutil.copy(assets / "finished" / "report.html", out / "report.html")
    (out / ".scores.csv.k1ll3d_x.tmp").write_text("split,idx\ntrain,0\n")
    stage = tmp / ".out.lemon-stage-4242-abcdef"
    stage.mkdir()
    shutil.copy(assets / "finished" / "args.json", stage / "args.json")
    _stale_lock(tmp)


def _foreign(tmp: Path, assets: Path) -> None:
    out = tmp / "out"
    out.mkdir()
    (out / "log.txt").write_text("my own notes\n")
    (out / "scores.csv").write_text("student,score\nann,3\n")
    (out / "args.json").write_text('{"learning_rate": 0.1}\n')


def _train_folder(tmp: Path, assets: Path) -> None:
    """A CLIP checkpoint folder as train_clip_from_scratch.py writes it (it has a 'done' too)."""
    shutil.copytree(assets / "ckpt" / "tiny_open_clip", tmp / "out")
    (tmp / "out" / "train_info.json").write_text('{"n_pairs": 60}\n')
    mark_done(tmp / "out", 1.0)


def _pending(tmp: Path, assets: Path, finished: bool = False) -> None:
    """A sweep run folder: the launcher's job record (and the job's output file) before the run starts."""
    if finished:
        _finished(tmp, assets)
    else:
        (tmp / "out").mkdir()
    (tmp / "out" / "job_id").write_text(f"local:{socket.gethostname()}:{os.getpid()}:1\nlog=x\n")
    (tmp / "out" / "job_output.txt").write_text("started\n")


def _sweep_root(tmp: Path, assets: Path) -> None:
    shutil.copytree(assets / "finished", tmp / "sweep" / "exp" / "0123abcd")
    shutil.copytree(assets / "oneclass_run", tmp / "sweep" / "exp" / "4567cdef")


def _symlink(tmp: Path, assets: Path) -> None:
    _finished(tmp, assets)
    (tmp / "link").symlink_to(tmp / "out", target_is_directory=True)


def _live_lock(tmp: Path, assets: Path) -> Callable[[], None]:
    """This test process holds the folder's lock while the command runs."""
    _finished(tmp, assets)
    lock = RunLock(tmp / ".out.lemon.lock", tmp / "out").acquire()
    return lock.release


def _cache(tmp: Path, assets: Path, damage: str) -> None:
    """The cache that the image run filled, with its largest entry damaged as ``damage`` says."""
    shutil.copytree(assets / "cache", tmp / "cache")
    npy = max((tmp / "cache").rglob("*.npy"), key=lambda p: p.stat().st_size)
    sidecar = npy.with_suffix(".json")
    if damage == "flip":  # same size, other bytes (a bad sector, a stray write)
        raw = bytearray(npy.read_bytes())
        raw[-64:] = bytes(b ^ 0x5A for b in raw[-64:])
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "sidecar":
        sidecar.write_text("{not json")
    elif damage == "no_checksum":  # an entry written before checksums existed
        info = json.loads(sidecar.read_text())
        del info["sha256"]
        sidecar.write_text(json.dumps(info))


def _replaced_image(tmp: Path, assets: Path) -> None:
    """A table whose first image was replaced by another one of the same size, mtime kept (cp -p), after
    a run filled the cache."""
    shutil.copytree(assets / "data", tmp / "data")
    first = run_cli(
        "run_lemon",
        _argv(IMG.replace("{data}", str(tmp / "data")), tmp, tmp / "first", assets),
        tmp / "logs0",
    )
    assert first.rc == 0, first.err
    target, donor = tmp / "data" / "pics" / "0.bmp", tmp / "data" / "pics" / "1.bmp"
    stat = target.stat()
    target.write_bytes(donor.read_bytes())  # same size: 8x8 BMPs
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size and target.stat().st_mtime_ns == stat.st_mtime_ns


def _truncated_checkpoint(tmp: Path, assets: Path, where: str) -> None:
    folder = tmp / "ckpt" if where == "path" else tmp / "cache" / "models" / where
    shutil.copytree(assets / "ckpt" / "tiny_open_clip", folder)
    weights = folder / "open_clip_model.safetensors"
    weights.write_bytes(
        weights.read_bytes()[: weights.stat().st_size // 2]
    )  # a full disk, a killed copy


def _own_table(
    tmp: Path, assets: Path, rows: int | None = None, blank: tuple[int, ...] = ()
) -> None:
    """The assets' image table as a user's own: its first ``rows`` rows, the captions of ``blank``
    rows empty or whitespace."""
    (tmp / "data").mkdir()
    os.symlink(assets / "data" / "pics", tmp / "data" / "pics")
    table = pd.read_csv(assets / "data" / "pairs.csv")
    table = table.head(rows) if rows is not None else table
    for n, row in enumerate(blank):
        table.loc[row, "caption"] = ("", "   ", "\t")[n % 3]
    table.to_csv(tmp / "data" / "pairs.csv", index=False)


# ------------------------------------------------------------------------ a data team's real files
def _pictures(tmp: Path, assets: Path) -> Path:
    """``tmp/data`` with the assets' 60 pictures as ``pics/`` (a link, as a team's shared folder)."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    if not (data / "pics").exists():
        os.symlink(assets / "data" / "pics", data / "pics")
    return data


def _label_table(
    tmp: Path,
    assets: Path,
    labels: list,
    name: str = "labels",
    fmt: str = "csv",
    images: list | None = None,
) -> Path:
    """A classification table ``tmp/data/<name>.<fmt>`` of the pictures (or ``images``) and ``labels``."""
    data = _pictures(tmp, assets)
    images = images or [f"pics/{i}.bmp" for i in range(len(labels))]
    table = pd.DataFrame({"image": images, "label": labels})
    path = data / f"{name}.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def _caption_table(tmp: Path, assets: Path, change: Callable[[pd.DataFrame], None]) -> None:
    """``tmp/data/pairs.csv``: the assets' caption table with ``change`` applied."""
    _pictures(tmp, assets)
    table = pd.read_csv(assets / "data" / "pairs.csv", keep_default_na=False)
    change(table)
    table.to_csv(tmp / "data" / "pairs.csv", index=False)


def _set_first(table: pd.DataFrame, column: str, values: list) -> None:
    """The first ``len(values)`` cells of ``column`` set to ``values``, in place."""
    table.loc[: len(values) - 1, column] = values


def _png16(tmp: Path, assets: Path) -> None:
    """The greyscale pictures as 16-bit PNGs (PIL mode I;16, as PIL writes a uint16 array): each 8-bit
    value v stored as v * 257."""
    from PIL import Image

    (tmp / "data" / "pics").mkdir(parents=True)
    for i in range(60):
        values = np.load(assets / "grey" / "pics" / f"{i}.npy").astype(np.uint16) * 257
        Image.fromarray(values).save(tmp / "data" / "pics" / f"{i}.png")
    shutil.copy(assets / "grey" / "pairs.csv", tmp / "data" / "pairs.csv")


def _tree(tmp: Path, assets: Path, extra: dict[str, object]) -> None:
    """An ImageFolder tree ``tmp/tree/<class>/`` of the pictures (three classes), plus ``extra`` files
    (relative path -> bytes, or a picture number to copy)."""
    for i in range(60):
        target = tmp / "tree" / LABELS3[i] / f"{i}.bmp"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(assets / "data" / "pics" / f"{i}.bmp", target)
    for rel, content in extra.items():
        path = tmp / "tree" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, int):
            shutil.copy(assets / "data" / "pics" / f"{content}.bmp", path)
        else:
            path.write_bytes(content)


def _jpeg(i: int, assets: Path) -> bytes:
    """Picture ``i`` as JPEG bytes (what a .jfif file holds)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(assets / "data" / "pics" / f"{i}.bmp").convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


def _huge_png(path: Path, side: int = 15000) -> None:
    """A real ``side`` x ``side`` PNG (225 megapixels at 15000) of one colour: a few hundred KiB."""
    from PIL import Image

    Image.new("1", (side, side), 1).save(path, optimize=False)


def _truncated_jpeg(tmp: Path, assets: Path) -> None:
    """The caption table with picture 5 replaced by a JPEG cut short (its header reads, its data ends)."""
    data = tmp / "data"
    shutil.copytree(assets / "data" / "pics", data / "pics")
    shutil.copy(assets / "data" / "pairs.csv", data / "pairs.csv")
    raw = b"".join(_jpeg(j, assets) for j in (5,))
    (data / "pics" / "5.jpg").write_bytes(raw[: len(raw) * 2 // 3])
    table = pd.read_csv(data / "pairs.csv")
    table.loc[5, "image"] = "pics/5.jpg"
    table.to_csv(data / "pairs.csv", index=False)


def _huge_row(tmp: Path, assets: Path) -> None:
    """The caption table whose last row names a real 225-megapixel PNG."""
    _caption_table(
        tmp, assets, lambda t: t.__setitem__("image", [*t["image"][:59], "big/huge.png"])
    )
    (tmp / "data" / "big").mkdir()
    _huge_png(tmp / "data" / "big" / "huge.png")


def _sweep_lock(tmp: Path, assets: Path) -> Callable[[], None]:
    """This test process holds the sweep's lock, as a launcher running it would."""
    from lemon.sweep.jobs import SWEEP_LOCK

    folder = tmp / "sweep" / "smoke_synthetic"
    folder.mkdir(parents=True)
    lock = RunLock(folder / SWEEP_LOCK, folder, holder="another launcher").acquire()
    return lock.release


def _parquet_cells(tmp: Path, assets: Path, kind: str) -> None:
    """A parquet label column of list<string> cells (one label each; ``multi``: row 7 holds two), of
    binary cells (b'cat'), or of floats (0.0, 1.0, 2.0)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = _pictures(tmp, assets)
    images = [f"pics/{i}.bmp" for i in range(60)]
    if kind in ("list", "multi"):
        cells = [[name] for name in LABELS3]
        if kind == "multi":
            cells[7] = ["cat", "dog"]
        column = pa.array(cells, type=pa.list_(pa.string()))
    elif kind == "bytes":
        column = pa.array([name.encode() for name in LABELS3], type=pa.binary())
    else:
        column = pa.array([float(i % 3) for i in range(60)], type=pa.float64())
    pq.write_table(pa.table({"image": images, "label": column}), data / "labels.parquet")
    (tmp / "names.txt").write_text("cat\ndog\nbird\n")


PRIOR: dict[str, Callable[[Path, Path], object]] = {
    "none": lambda tmp, assets: None,
    "finished": _finished,
    "finished+report": lambda tmp, assets: _finished(tmp, assets, report=True),
    "finished+stale_lock": lambda tmp, assets: (_finished(tmp, assets), _stale_lock(tmp)),
    "incomplete": lambda tmp, assets: (_finished(tmp, assets), (tmp / "out" / "done").unlink()),
    "killed": _killed,
    "foreign": _foreign,
    "train_folder": _train_folder,
    "pending": _pending,
    "finished+job_id": lambda tmp, assets: _pending(tmp, assets, finished=True),
    "sweep_root": _sweep_root,
    "symlink": _symlink,
    "live_lock": _live_lock,
    "file": lambda tmp, assets: (tmp / "out").write_text("a file\n"),
    "blocker": lambda tmp, assets: (tmp / "blocker").write_text("a file\n"),
    "npz_1d": lambda tmp, assets: _write_npz(tmp / "x.npz", train_img=np.ones(60, np.float32)),
    "npz_3d": lambda tmp, assets: _write_npz(
        tmp / "x.npz", test_txt=np.ones((20, 2, 4), np.float32)
    ),
    "npz_dims": lambda tmp, assets: _write_npz(tmp / "x.npz", val_txt=np.ones((20, 6), np.float32)),
    "npz_prompts_1d": lambda tmp, assets: _write_npz(tmp / "x.npz", label_prompt_txt=np.ones(8)),
    "npz_garbage": lambda tmp, assets: (tmp / "x.npz").write_bytes(b"PK\x03\x04 not really"),
    "cache_flip": lambda tmp, assets: _cache(tmp, assets, "flip"),
    "cache_truncate": lambda tmp, assets: _cache(tmp, assets, "truncate"),
    "cache_sidecar": lambda tmp, assets: _cache(tmp, assets, "sidecar"),
    "cache_no_checksum": lambda tmp, assets: _cache(tmp, assets, "no_checksum"),
    "replaced_image": _replaced_image,
    "table_of_1": lambda tmp, assets: _own_table(tmp, assets, rows=1),
    "table_of_5": lambda tmp, assets: _own_table(tmp, assets, rows=5),
    "ckpt_truncated": lambda tmp, assets: _truncated_checkpoint(tmp, assets, "path"),
    "named_truncated": lambda tmp, assets: _truncated_checkpoint(
        tmp, assets, "mimic_clip_from_scratch_random"
    ),
    "agg_mixed": lambda tmp, assets: _sweep_root(tmp, assets),
    # --- a data team's real files (issue 25)
    "png16": _png16,
    "labels_mixed": lambda tmp, assets: _label_table(
        tmp, assets, [str(i % 3) if i % 2 else LABELS3[i] for i in range(60)]
    ),
    "labels_spelled": lambda tmp, assets: _label_table(
        tmp,
        assets,
        [
            {0: "cat", 3: "CAT", 6: "cat "}.get(i % 9, LABELS3[i]) if i % 3 == 0 else LABELS3[i]
            for i in range(60)
        ],
    ),
    "labels_zeros": lambda tmp, assets: (
        _label_table(tmp, assets, [("1", "01", "2", "3")[i % 4] for i in range(60)]),
        (tmp / "names.txt").write_text("zero\none\ntwo\nthree\n"),
    ),
    "labels_one_class": lambda tmp, assets: _label_table(tmp, assets, ["cat"] * 60),
    "labels_bool": lambda tmp, assets: _label_table(tmp, assets, [i % 2 == 0 for i in range(60)]),
    "labels_words": lambda tmp, assets: _label_table(tmp, assets, LABELS3),
    "names_header": lambda tmp, assets: (
        _label_table(tmp, assets, [i % 3 for i in range(60)]),
        (tmp / "names.txt").write_text("class_name\ncat\ndog\nbird\n"),
    ),
    "names_extra": lambda tmp, assets: (
        _label_table(tmp, assets, [i % 3 for i in range(60)]),
        (tmp / "names.txt").write_text("cat\ndog\nbird\nfish\nfrog\n"),
    ),
    "names_numbered": lambda tmp, assets: (
        _label_table(tmp, assets, [i % 3 for i in range(60)]),
        (tmp / "names.txt").write_text("0,cat\n1,dog\n2,bird\n"),
    ),
    "parquet_list": lambda tmp, assets: _parquet_cells(tmp, assets, "list"),
    "parquet_multi": lambda tmp, assets: _parquet_cells(tmp, assets, "multi"),
    "parquet_bytes": lambda tmp, assets: _parquet_cells(tmp, assets, "bytes"),
    "parquet_floats": lambda tmp, assets: _parquet_cells(tmp, assets, "floats"),
    "same_image_two_labels": lambda tmp, assets: _label_table(
        tmp,
        assets,
        ["cat", "dog", *LABELS3[2:]],
        images=["pics/0.bmp"] * 2 + [f"pics/{i}.bmp" for i in range(2, 60)],
    ),
    "tree_copy_in_two_classes": lambda tmp, assets: _tree(tmp, assets, {"dog/copy_of_0.bmp": 0}),
    "tree_jfif_notes_heic": lambda tmp, assets: _tree(
        tmp,
        assets,
        {
            **{f"cat/photo{j}.jfif": _jpeg(j, assets) for j in range(3)},
            "cat/notes.txt": b"taken on holiday\n",
            "dog/IMG_0001.HEIC": b"\x00\x00\x00\x18ftypheic",
        },
    ),
    "tree_checkpoints": lambda tmp, assets: _tree(
        tmp,
        assets,
        {
            ".ipynb_checkpoints/0-checkpoint.bmp": 0,
            "cat/.ipynb_checkpoints/3-checkpoint.bmp": 3,
            ".ipynb_checkpoints/Untitled-checkpoint.ipynb": b"{}",
        },
    ),
    "tree_one_class": lambda tmp, assets: [
        shutil.copytree(assets / "data" / "pics", tmp / "tree" / "cat")
    ],
    "captions_one": lambda tmp, assets: _caption_table(
        tmp, assets, lambda t: t.__setitem__("caption", "a photo")
    ),
    "captions_missing_words": lambda tmp, assets: _caption_table(
        tmp, assets, lambda t: _set_first(t, "caption", MISSING_WORDS)
    ),
    "urls_http": lambda tmp, assets: _caption_table(
        tmp,
        assets,
        lambda t: t.__setitem__("image", [f"http://example.com/c{i:03d}.png" for i in range(60)]),
    ),
    "urls_some": lambda tmp, assets: _caption_table(
        tmp,
        assets,
        lambda t: _set_first(
            t, "image", ["s3://bucket/a.png", "gs://bucket/b.png", "https://example.com/c.png"]
        ),
    ),
    "urls_file": lambda tmp, assets: _caption_table(
        tmp,
        assets,
        lambda t: t.__setitem__(
            "image", [(tmp / "data" / p).resolve().as_uri() for p in t["image"]]
        ),
    ),
    "path_trailing_space": lambda tmp, assets: _caption_table(
        tmp,
        assets,
        lambda t: t.__setitem__("image", [p + " " * (i == 3) for i, p in enumerate(t["image"])]),
    ),
    "truncated_jpeg": _truncated_jpeg,
    "huge_image": _huge_row,
    "shuffled_labels": lambda tmp, assets: _label_table(
        tmp, assets, [*np.asarray(LABELS3)[SHUFFLE]], images=[f"pics/{i}.bmp" for i in SHUFFLE]
    ),
    "sweep_locked": _sweep_lock,
}
MISSING_WORDS = ["None", "NaN", "null", "NA", "nan", "#N/A"]
SHUFFLE = np.random.default_rng(7).permutation(60)


# ------------------------------------------------------------------------------- checks of successes
def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _no_old_report(tmp, assets, outcome):
    out = tmp / "out"
    assert not (out / "report.html").exists() and not (out / "flagged.csv").exists()
    assert _read(out / "args.json")["noise_level"] == 0.1


def _same_scores_as(reference: str):
    def check(tmp, assets, outcome):
        new = pd.read_csv(tmp / "out" / "scores.csv")
        old = pd.read_csv(assets / reference / "scores.csv")
        np.testing.assert_allclose(new["score"], old["score"], rtol=1e-6, atol=1e-6)
        assert _read(tmp / "out" / "args.json")["data"]["cache_misses"] >= 1  # recomputed

    return check


def _replaced(stale: bool):
    def check(tmp, assets, outcome):
        new = pd.read_csv(tmp / "out" / "scores.csv")
        old = pd.read_csv(tmp / "first" / "scores.csv")
        row = new["image"].str.endswith("pics/0.bmp")
        assert row.sum() == 1
        misses = _read(tmp / "out" / "args.json")["data"]["cache_misses"]
        if stale:  # the documented limit of 'stat': same size and mtime -> the old embedding
            assert misses == 0
            np.testing.assert_array_equal(new["d_mm"], old["d_mm"])
        else:
            assert misses >= 1
            assert not np.isclose(new.loc[row, "d_mm"].item(), old.loc[row, "d_mm"].item())

    return check


def _launcher_kept(tmp, assets, outcome):
    assert (tmp / "out" / "job_id").read_text().startswith("local:")
    assert (tmp / "out" / "job_output.txt").read_text() == "started\n"


def _launcher_dropped(tmp, assets, outcome):
    assert not (tmp / "out" / "job_id").exists() and not (tmp / "out" / "job_output.txt").exists()


def _old_files_gone(tmp, assets, outcome):
    assert not (tmp / "out" / "report.html").exists()


def _through_symlink(tmp, assets, outcome):
    assert (tmp / "link").is_symlink() and (tmp / "out" / "done").is_file()
    assert _read(tmp / "out" / "args.json")["output_dir"] == str(tmp / "link")
    assert _read(tmp / "out" / "args.json")["knn_k"] == 7


def _table_of_both(tmp, assets, outcome):
    table = pd.read_csv(tmp / "sweep" / "tables" / "main.csv")
    assert sorted(table["dataset"]) == ["embeddings", "synthetic"]


def _blank_rows_counted(tmp, assets, outcome):
    """Every input row is scored or listed in dropped.csv with its reason, and counted."""
    scored = pd.read_csv(tmp / "out" / "scores.csv")
    dropped = pd.read_csv(tmp / "out" / "dropped.csv")
    assert sorted(dropped["row"]) == [3, 17, 42] and set(dropped["reason"]) == {"empty text"}
    assert sorted([*scored["row"], *dropped["row"]]) == list(range(60))
    metrics = _read(tmp / "out" / "metrics.json")
    counted = sum(v for k, v in metrics.items() if k.endswith("/dropped"))
    assert counted == 3


def _scores(tmp: Path) -> pd.DataFrame:
    return pd.read_csv(tmp / "out" / "scores.csv", keep_default_na=False)


def _dropped(tmp: Path) -> dict[str, str]:
    path = tmp / "out" / "dropped.csv"
    if not path.exists():
        return {}
    table = pd.read_csv(path, keep_default_na=False)
    return dict(zip(table["image"], table["reason"]))


def _same_as(reference: str):
    """Scores, flags and texts per pair equal those of an assets' run on other files of the same
    pictures, joined by picture (the 16-bit twins of 8-bit PNGs; a reordered table)."""

    def check(tmp, assets, outcome):
        new, old = (
            _scores(tmp),
            pd.read_csv(assets / reference / "scores.csv", keep_default_na=False),
        )
        key = lambda t: t["image"].str.extract(r"(\d+)\.\w+$")[0].astype(int)  # noqa: E731
        new, old = (
            new.assign(pic=key(new)).set_index("pic"),
            old.assign(pic=key(old)).set_index("pic"),
        )
        old = old.loc[new.index]
        assert len(new) == 60 and (new["text"] == old["text"]).all()
        assert (new["split"] == old["split"]).all()
        np.testing.assert_allclose(new["score"], old["score"], rtol=1e-5, atol=1e-6)
        assert (new["flagged"] == old["flagged"]).all()

    return check


def _texts_are(*expected: str):
    def check(tmp, assets, outcome):
        assert set(_scores(tmp)["text"]) == {f"A photo of a {t}" for t in expected}

    return check


def _conflict(kept: bool):
    def check(tmp, assets, outcome):
        rows = _scores(tmp)["row"].tolist()
        dropped = pd.read_csv(tmp / "out" / "dropped.csv") if not kept else None
        if kept:
            assert 0 in rows and 1 in rows
        else:
            assert 0 not in rows and 1 not in rows
            assert dict(zip(dropped["row"], dropped["reason"])) == {
                0: "conflicting label",
                1: "conflicting label",
            }

    return check


def _every_file(*listed: str):
    """Every file under the tree that a user would call data is scored or listed (``listed``: the ones
    dropped.csv must give, with their reasons), and no hidden folder became a class."""

    def check(tmp, assets, outcome):
        scored, dropped = set(_scores(tmp)["image"]), _dropped(tmp)
        files = {
            p.relative_to(tmp / "tree").as_posix()
            for p in (tmp / "tree").rglob("*")
            if p.is_file() and not p.name.endswith(".ipynb")
        }
        assert scored | set(dropped) == files and not scored & set(dropped)
        assert {f"{f}:{dropped[f]}" for f in dropped} == set(listed)
        assert not any(t.startswith("A photo of a .") for t in _scores(tmp)["text"])

    return check


def _api_same(tmp, assets, outcome):
    table = pd.read_csv(tmp / "api.csv")
    np.testing.assert_allclose(table["named"], table["explicit"], rtol=1e-6)


def _as_written(tmp, assets, outcome):
    scores = _scores(tmp).set_index("row")
    assert [scores.loc[r, "text"] for r in range(6)] == MISSING_WORDS


def _dropped_exactly(expected: dict[str, str]):
    def check(tmp, assets, outcome):
        assert _dropped(tmp) == expected

    return check


def _said_as_listed(tmp, assets, outcome):
    """The warning names the reason dropped.csv gives the file (here a truncated JPEG)."""
    dropped = _dropped(tmp)
    assert list(dropped) == ["pics/5.jpg"]
    assert (
        f"1 {dropped['pics/5.jpg']}(s)" in outcome.err
        or f"1 {dropped['pics/5.jpg']} " in outcome.err
    )


def _no_label_summary(tmp, assets, outcome):
    """Without labels: counts and flags, no table of dashes nor the F1 legend; the log names the table."""
    assert "F1_<rule>" not in outcome.out and "AUPRC" not in outcome.out
    assert re.search(r"^train\s+\d+\s+\d+$", outcome.out, re.M)
    assert f"from {tmp / 'data' / 'labels.csv'}" in (tmp / "out" / "log.txt").read_text()


def _true_rate(tmp, assets, outcome):
    """The summary prints the true noise rate of the pairs the estimate covers, beside the estimate."""
    metrics = _read(tmp / "out" / "metrics.json")
    pool = _read(tmp / "out" / "hparams.json")["label_free"]["pool"]
    splits = ["val", "test"] if pool == "held_out" else ["train", "val", "test"]
    n = sum(metrics[f"{s}/n"] for s in splits)
    true = sum(metrics[f"{s}/prevalence"] * metrics[f"{s}/n"] for s in splits) / n
    assert f"true rate {true:.1%}" in outcome.out


def _report_elsewhere(tmp, assets, outcome):
    assert (tmp / "rep" / "report.html").is_file() and (tmp / "rep" / "flagged.csv").is_file()
    assert not (tmp / "out" / "report.html").exists()


CHECKS: dict[str, Callable] = {
    "no_old_report": _no_old_report,
    "same_scores": _same_scores_as("img_run"),
    "stale_by_stat": _replaced(stale=True),
    "fresh_by_content": _replaced(stale=False),
    "launcher_kept": _launcher_kept,
    "launcher_dropped": _launcher_dropped,
    "old_files_gone": _old_files_gone,
    "through_symlink": _through_symlink,
    "table_of_both": _table_of_both,
    "same_as_grey": _same_as("grey_run"),
    "same_as_labels": _same_as("labels_run"),
    "texts_3": _texts_are("cat", "dog", "bird"),
    "texts_5": _texts_are("cat", "CAT", "cat ", "dog", "bird"),
    "texts_zeros": _texts_are("one", "two", "three"),
    "texts_bool": _texts_are("True", "False"),
    "conflict_kept": _conflict(kept=True),
    "conflict_dropped": _conflict(kept=False),
    "tree_copy": _every_file(),
    "tree_jfif": _every_file(
        "cat/notes.txt:not an image file", "dog/IMG_0001.HEIC:unsupported image format"
    ),
    "tree_hidden": _every_file(
        ".ipynb_checkpoints/0-checkpoint.bmp:hidden file",
        "cat/.ipynb_checkpoints/3-checkpoint.bmp:hidden file",
    ),
    "api_same": _api_same,
    "as_written": _as_written,
    "urls_listed": _dropped_exactly(
        {
            "s3://bucket/a.png": "URL (not downloaded)",
            "gs://bucket/b.png": "URL (not downloaded)",
            "https://example.com/c.png": "URL (not downloaded)",
        }
    ),
    "nothing_dropped": _dropped_exactly({}),
    "space_listed": _dropped_exactly({"pics/3.bmp ": "missing image"}),
    "huge_listed": _dropped_exactly({"big/huge.png": "image too large"}),
    "said_as_listed": _said_as_listed,
    "no_label_summary": _no_label_summary,
    "true_rate": _true_rate,
    "report_elsewhere": _report_elsewhere,
}


# ------------------------------------------------------------------------------------------- matrix
@dataclass(frozen=True)
class Case:
    id: str
    prior: str
    command: str
    rc: int
    stderr: str  # regex of the one stderr line ("" = nothing on stderr)
    check: str = ""
    how: str = ""
    slow: bool = False  # a sibling of a case already in the default suite: runs in CI


C = Case
# fmt: off
CASES = [
    # --- the cases
    C("overwrite_then_invalid_k",  "finished",           f"{RUN} --knn_k 1000 --overwrite", 2, r"knn_k=1000 but the reference set has 400 samples"),
    C("folder_of_someone_else",    "foreign",            RUN, 2, r"holds files that are not a lemon run \(args.json, log.txt, scores.csv\)"),
    C("overwrite_drops_report",    "finished+report",    f"{RUN} --noise_level 0.1 --overwrite", 0, "", "no_old_report"),
    C("cache_damaged_in_place",    "cache_flip",         IMG, 0, r"cache entry .* does not match its checksum .*; recomputing it", "same_scores"),
    C("image_swapped_stat",        "replaced_image",     IMG.replace("{data}", "{tmp}/data"), 0, "", "stale_by_stat"),
    C("image_swapped_content",     "replaced_image",     IMG.replace("{data}", "{tmp}/data") + " --image_identity content", 0, "", "fresh_by_content"),
    C("output_dir_is_a_file",      "file",               RUN, 2, r"--output_dir \S+/out is a file, not a folder"),
    C("output_dir_below_a_file",   "blocker",            f"{RUN} --output_dir {{tmp}}/blocker/out", 2, r"is below \S+/blocker, which is a file"),
    C("read_only_file_system",     "finished",           f"{RUN} --overwrite", 2, r"is not writable \(read-only file system\)", how="tmpfs-ro", slow=True),
    C("full_disk",                 "finished",           f"{RUN} --overwrite", 2, r"Cannot write \S+: no space left on the device; .* is unchanged", how="tmpfs=150", slow=True),
    C("npz_with_1d_array",         "npz_1d",             NPZ, 2, r"train_img must be a 2-D array \(n, d\), got shape \(60,\)"),
    C("truncated_named_checkpoint", "named_truncated",   IMG.replace("{ckpt}", "mimic_clip_from_scratch_random"), 2, r"open_clip_model.safetensors is damaged .*; delete \S+ and train it"),
    C("aggregate_normal_and_one_class", "agg_mixed",     "sweep tables --output_root {tmp}/sweep", 0, "", "table_of_both"),
    C("sweep_without_a_terminal",  "none",               "sweep launch --experiment smoke --output_root {tmp}/sweep", 1, r"stdin is not a terminal.*pass --skip_confirmation to launch"),
    C("misspelled_flag",           "none",               f"{RUN} --knn_kk 3", 2, r"unrecognized arguments: --knn_kk 3\. Did you mean --knn_k\?"),
    C("killed_run_leftovers",      "killed",             RUN, 0, r"took over the lock of a run that ended without releasing it \(pid \d+", "old_files_gone"),
    C("stale_lock_of_dead_run",    "finished+stale_lock", f"{RUN} --overwrite", 0, r"took over the lock .*started 2026-01-01"),
    C("folder_in_use",             "live_lock",          f"{RUN} --overwrite", 2, rf"in use by another run: pid {os.getpid()} on \S+, started \S+"),
    # --- more of the same kinds
    C("finished_without_overwrite", "finished",          RUN, 2, r"already holds a finished run .* pass --overwrite"),
    C("incomplete_run_is_replaced", "incomplete",        RUN, 0, ""),
    C("checkpoint_folder_refused", "train_folder",       f"{RUN} --overwrite", 2, r"not a lemon run \(done, open_clip_config.json, open_clip_model.safetensors, train_info.json\)"),
    C("sweep_root_refused",        "sweep_root",         f"{RUN} --output_dir {{tmp}}/sweep --overwrite", 2, r"not a lemon run \(exp\)"),
    C("launcher_files_kept",       "pending",            RUN, 0, "", "launcher_kept"),
    C("old_launcher_files_dropped", "finished+job_id",   f"{RUN} --overwrite", 0, "", "launcher_dropped"),
    C("through_a_symlink",         "symlink",            f"{RUN} --output_dir {{tmp}}/link --overwrite --knn_k 7", 0, "", "through_symlink"),
    C("failed_new_path_leaves_nothing", "none",          f"{RUN} --output_dir {{tmp}}/a/b/c --knn_k 1000", 2, r"knn_k=1000"),
    C("file_size_limit",           "finished",           f"{RUN} --overwrite", 2, r"Cannot write \S+: file too large; .* is unchanged", how="fsize=20000"),
    C("npz_with_3d_array",         "npz_3d",             NPZ, 2, r"test_txt must be a 2-D array \(n, d\), got shape \(20, 2, 4\)"),
    C("npz_dimensions_differ",     "npz_dims",           NPZ, 2, r"image and text embeddings must be \(n, d\) arrays of the same dimension d, got shapes \(20, 8\) and \(20, 6\)"),
    C("npz_prompts_1d",            "npz_prompts_1d",     NPZ, 2, r"label_prompt_txt must be a 2-D array"),
    C("npz_not_an_archive",        "npz_garbage",        NPZ, 2, r"Cannot read \S+x.npz as an .npz of arrays"),
    C("cache_entry_truncated",     "cache_truncate",     IMG, 0, r"cache entry .* is unreadable .*; recomputing it", "same_scores"),
    C("cache_sidecar_unreadable",  "cache_sidecar",      IMG, 0, r"cache entry .* is unreadable .*; recomputing it", "same_scores"),
    C("cache_entry_without_checksum", "cache_no_checksum", IMG, 0, r"cache entry .* has no checksum .*; recomputing it", "same_scores"),
    C("truncated_checkpoint_path", "ckpt_truncated",     IMG.replace("{ckpt}", "{tmp}/ckpt"), 2, r"Checkpoint \S+/ckpt: \S+ is damaged .*copy or download it again"),
    C("aggregate_root_is_a_file",  "file",               "sweep tables --output_root {tmp}/out", 2, r"^error: .*out"),
    C("aggregate_misspelled_flag", "none",               "sweep tables --output_rot {tmp}", 2, r"Did you mean --output_root\?"),
    C("sweep_misspelled_flag",     "none",               "sweep launch --experment smoke --output_root {tmp}/sweep", 2, r"Did you mean --experiment\?"),
    # --- own data (every row scored or counted; tables too small for three splits)
    C("table_of_1_row",            "table_of_1",         IMG.replace("{data}", "{tmp}/data"), 2, r"1 distinct images are too few for train/val/test splits \(80/10/10 needs at least 6\)"),
    C("table_of_5_rows",           "table_of_5",         IMG.replace("{data}", "{tmp}/data"), 2, r"5 distinct images are too few .*needs at least 6"),
    C("data_check_table_of_5",     "table_of_5",         "lemon.data.__main__ check csv --data_path {tmp}/data/pairs.csv", 1, r"5 distinct images are too few .*needs at least 6"),
    C("report_misspelled_flag",    "finished",           "lemon.report.__main__ {tmp}/out --audit_sise 3", 2, r"Did you mean --audit_size\?"),
    # --- a data team's real files (issue 25: its case number first), each with siblings
    C("01_png_16_bit",             "png16",              IMG.replace("{data}", "{tmp}/data"), 0, "", "same_as_grey"),
    C("02_numbers_and_names",      "labels_mixed",       LBL, 2, r"labels\.csv' \('label'\): the labels mix numbers and names \(30 rows numbered, e\.g\. '0'; 30 named, e\.g\. '\w+'\).*pass --class_names FILE"),
    C("02_spellings_merged",       "labels_spelled",     LBL, 0, r"merged 2 label spelling\(s\) that differ only in case, spacing or leading zeros into 1 classes \(\d+ rows relabelled, e\.g\. 'CAT' -> 'cat'.*pass --label_variants keep", "texts_3"),
    C("02_spellings_kept",         "labels_spelled",     f"{LBL} --label_variants keep", 0, r"2 label spelling\(s\) differ only in case.*kept as separate classes \(--label_variants keep\)", "texts_5", slow=True),
    C("02_leading_zeros",          "labels_zeros",       f"{LBL} --class_names {{tmp}}/names.txt", 0, r"merged 1 label spelling\(s\) .* e\.g\. '01' -> '1'", "texts_zeros", slow=True),
    C("02_true_false_labels",      "labels_bool",        LBL, 0, r"the labels are True/False, so the text model reads prompts such as 'A photo of a True'; pass --class_names", "texts_bool", slow=True),
    C("03_one_class_table",        "labels_one_class",   LBL, 2, r"every pair has the same label 'cat' \(1 class\).*needs at least two classes"),
    C("03_one_class_folder",       "tree_one_class",     TREE, 2, r"tree' \(folder names\): every pair has the same label 'cat' \(1 class\)"),
    C("03_one_caption",            "captions_one",       IMG.replace("{data}", "{tmp}/data"), 2, r"every pair has the same caption 'a photo'"),
    C("04_class_names_header",     "names_header",       f"{LBL} --class_names {{tmp}}/names.txt", 2, r"--class_names '\S+names\.txt': line 1 'class_name' reads as a header or comment.*remove it"),
    C("04_class_names_numbered",   "names_numbered",     f"{LBL} --class_names {{tmp}}/names.txt", 2, r"its lines carry numbers \('0,cat'\); write the names alone"),
    C("04_class_names_extra",      "names_extra",        f"{LBL} --class_names {{tmp}}/names.txt", 0, r"has 5 names but the labels go up to 2; lines 4-5 name no label", "texts_3", slow=True),
    C("05_parquet_list_labels",    "parquet_list",       PAR, 0, "", "texts_3"),
    C("05_parquet_two_labels_in_a_row", "parquet_multi", PAR, 2, r"column 'label': row 7 holds 2 values \['cat', 'dog'\]; a pair has one label or caption"),
    C("05_parquet_bytes_labels",   "parquet_bytes",      PAR, 0, "", "texts_3", slow=True),
    C("05_parquet_float_labels",   "parquet_floats",     f"{PAR} --class_names {{tmp}}/names.txt", 0, "", "texts_3", slow=True),
    C("06_same_image_two_labels",  "same_image_two_labels", LBL, 0, r"1 image\(s\) appear with two or more different labels \(2 rows; e\.g\. 'pics/0\.bmp' as 'cat' and 'dog'\): every pair is scored .*--conflicting_labels first", "conflict_kept"),
    C("06_same_image_dropped",     "same_image_two_labels", f"{LBL} --conflicting_labels drop", 0, r"1 image\(s\) appear with two or more different labels .*listed in dropped\.csv \(--conflicting_labels drop\)", "conflict_dropped", slow=True),
    C("06_same_bytes_two_folders", "tree_copy_in_two_classes", TREE, 0, r"1 image\(s\) appear with two or more different labels \(2 rows; e\.g\. 'cat/0\.bmp' as 'cat' and 'dog'\)", "tree_copy", slow=True),
    C("07_jfif_and_other_files",   "tree_jfif_notes_heic", TREE, 0, r"not reading 2 of 65 files: 1 not an image file \(first: '\S+/cat/notes\.txt'\), 1 unsupported image format \(first: '\S+IMG_0001\.HEIC'\); pip install pillow-heif", "tree_jfif"),
    C("08_api_class_names",        "labels_words",       "reliability_programs api_class_names {tmp}/data/labels.csv {ckpt} {cache} {tmp}/api.csv", 0, r"UserWarning: labels: 3 distinct strings over 60 pairs are read as class names \(prompts 'A photo of a bird'.*task='captioning'", "api_same"),
    C("09_ctrl_c_while_embedding", "finished",           BIG, 130, r"interrupted by Ctrl-C \(SIGINT\); what had not finished was not written", how="signal=INT"),
    C("09_sigterm_while_embedding", "finished",          BIG, 143, r"interrupted by SIGTERM;", how="signal=TERM", slow=True),
    C("09_sighup_while_embedding", "finished",           BIG, 129, r"interrupted by SIGHUP \(the terminal closed\);", how="signal=HUP", slow=True),
    C("09_ctrl_c_while_scoring",   "finished",           f"{RUN.replace('400', '6000')} --overwrite", 130, r"interrupted by Ctrl-C", how="signal=INT", slow=True),
    C("10_bind_mount_output",      "finished",           f"{RUN} --output_dir {{tmp}}/bound --overwrite --knn_k 7", 0, "", how="bind", slow=True),
    C("10_bind_mount_failed_run",  "finished",           f"{RUN} --output_dir {{tmp}}/bound --overwrite --knn_k 1000", 2, r"knn_k=1000", how="bind", slow=True),
    C("11_torchvision_fails_to_import", "finished",      f"reliability_programs mismatched_torch 2.13.0+cpu 0.28.0 broken {RUN[10:]} --overwrite --output_dir {{tmp}}/out", 2, r"torch and torchvision do not match: importing torchvision 0\.28\.0 with torch 2\.13\.0\+cpu fails \(RuntimeError: operator torchvision::nms does not exist\).*pip install torch==2\.13\.0 torchvision==0\.28\.0 --index-url https://download\.pytorch\.org/whl/cpu$"),
    C("11_torchvision_other_release", "finished",        f"reliability_programs mismatched_torch 2.14.1 0.28.0 ok {RUN[10:]} --overwrite --output_dir {{tmp}}/out", 2, r"torchvision 0\.28\.0 is not the release for torch 2\.14\.1 \(0\.29\.1 is\); .*pip install torch==2\.14\.1 torchvision==0\.29\.1$"),
    C("12_http_urls",              "urls_http",          IMG.replace("{data}", "{tmp}/data"), 2, r"column 'image' holds URLs \(first: 'http://example\.com/c000\.png'\); lemon reads local image files only: download them first"),
    C("12_some_cloud_urls",        "urls_some",          IMG.replace("{data}", "{tmp}/data"), 0, r"not scoring 3 of 60 images: 3 URL \(not downloaded\) \(first: 's3://bucket/a\.png'; download them", "urls_listed", slow=True),
    C("12_file_urls",              "urls_file",          IMG.replace("{data}", "{tmp}/data"), 0, "", "nothing_dropped", slow=True),
    C("13_path_with_trailing_space", "path_trailing_space", IMG.replace("{data}", "{tmp}/data"), 0, r"1 missing image \(first: 'pics/3\.bmp '\)", "space_listed"),
    C("13_truncated_jpeg",         "truncated_jpeg",     IMG.replace("{data}", "{tmp}/data"), 0, r"1 (unreadable|undecodable) image.*'\S*5\.jpg'", "said_as_listed", slow=True),
    C("14_24_sweep_held_by_another_launcher", "sweep_locked", "sweep launch --experiment smoke_synthetic --output_root {tmp}/sweep --skip_confirmation", 2, r"sweep smoke_synthetic in \S+ is in use by another launcher: pid \d+ on \S+, started \S+; wait for it to finish or pass --wait_for_lock"),
    C("15_n_workers_0",            "none",               "sweep launch --experiment smoke_synthetic --output_root {tmp}/sweep --command_launcher local_parallel --n_workers 0", 2, r"--n_workers must be >= 1, got 0\."),
    C("15_max_slurm_jobs_0",       "none",               "sweep launch --experiment smoke_synthetic --output_root {tmp}/sweep --command_launcher slurm --max_slurm_jobs 0", 2, r"--max_slurm_jobs must be >= 1, got 0\."),
    C("16_17_no_labels_summary",   "labels_words",       LBL, 0, "", "no_label_summary"),
    C("18_225_megapixels",         "huge_image",         IMG.replace("{data}", "{tmp}/data"), 0, r"1 image too large \(first: 'big/huge\.png'; --max_image_pixels N raises the limit\)", "huge_listed"),
    C("18_225_megapixels_check",   "huge_image",         "lemon.data.__main__ check csv --data_path {tmp}/data/pairs.csv", 0, r"1 image too large", slow=True),
    C("18_limit_below_every_image", "none",              f"{IMG} --max_image_pixels 50", 2, r"no row can be scored \(60 rows: 60 image too large\).*; --max_image_pixels N raises the limit\.$"),
    C("19_captions_none_nan_null", "captions_missing_words", IMG.replace("{data}", "{tmp}/data") + " --real_dataset --knn_k 5", 0, "", "as_written"),
    C("20_ipynb_checkpoints",      "tree_checkpoints",   TREE, 0, r"not reading 2 of 62 files: 2 hidden file \(first: '\S+/\.ipynb_checkpoints/0-checkpoint\.bmp'\)", "tree_hidden"),
    C("21_reordered_table",        "shuffled_labels",    LBL, 0, "", "same_as_labels"),
    C("22_report_read_only_folder", "finished",          "lemon.report.__main__ {tmp}/out", 2, r"Cannot write the report into \S+/out \(read-only file system\); pass --output DIR", how="tmpfs-ro"),
    C("22_report_elsewhere",       "finished",           "lemon.report.__main__ {tmp}/out --output {tmp}/rep", 0, "", "report_elsewhere", slow=True),
    C("23_real_dataset_with_clean_column", "none",       f"{IMG} --real_dataset --clean_column caption", 2, r"--real_dataset scores without ground truth, but --clean_column 'caption' gives it: drop --real_dataset"),
    C("25_true_noise_rate_printed", "none",              RUN, 0, "", "true_rate"),
]
# fmt: on


def _run_case(case: Case, tmp: Path, assets: Path, finalizers: list):
    """Set up the prior state, run the command as the case says; returns (outcome, root to inspect,
    snapshot of it before)."""
    work = tmp / "work"
    work.mkdir()
    release = PRIOR[case.prior](work, assets)
    if callable(release):
        finalizers.append(release)
    if case.how == "bind":
        (work / "bound").mkdir()  # the mount point
    before = snapshot(work)
    module = case.command.split()[0]
    if case.how.startswith("signal="):
        return _interrupted(case, work, tmp, assets), work, before
    if case.how == "bind":
        return _in_bind_mount(case, work, assets), work, before
    if case.how.startswith("tmpfs"):
        if not tmpfs_available():
            pytest.skip("unshare cannot mount a tmpfs here (needs user namespaces)")
        mnt, back = tmp / "mnt", tmp / "back"
        size = int(case.how.split("=")[1]) if "=" in case.how else 1024
        outcome = in_tmpfs(
            mnt,
            size,
            work / "out",
            module,
            _argv(case.command, mnt, mnt / "out", assets),
            back,
            read_only=case.how == "tmpfs-ro",
        )
        assert outcome.rc != 99, f"mounting failed: {outcome.err}"
        return outcome, back / "out", snapshot(work / "out")
    fsize = int(case.how.split("=")[1]) if case.how.startswith("fsize") else None
    argv = _argv(case.command, work, work / "out", assets)
    return run_cli(module, argv, tmp / "logs", max_file_size=fsize), work, before


def _interrupted(case: Case, work: Path, tmp: Path, assets: Path):
    """Start the command, wait until it has written into its staging folder (it is loading and
    embedding: a run writes args.json first), then send it the signal a user's Ctrl-C, ``kill`` or a
    closed terminal sends."""
    signum = getattr(signal, "SIG" + case.how.split("=")[1])
    argv = _argv(case.command, work, work / "out", assets)
    proc = start_cli(case.command.split()[0], argv, tmp / "logs")
    wait_for(
        lambda: (
            any((d / "args.json").exists() for d in rundir.staging_dirs(work / "out"))
            or not proc.is_alive()
        ),
        what="the run to start writing",
    )
    os.kill(proc.pid, signum)
    return finish(proc, tmp / "logs")


def _in_bind_mount(case: Case, work: Path, assets: Path):
    """Run the command with ``work/bound`` a bind mount of ``work/out`` (same file system; what
    ``os.path.ismount`` does not see), in a private mount namespace; the run's files land in
    ``work/out``."""
    if not bind_mount_available():
        pytest.skip("unshare cannot bind-mount here (needs user namespaces)")
    argv = _argv(case.command, work, work / "bound", assets)
    return in_bind_mount(work / "out", work / "bound", case.command.split()[0], argv)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=[pytest.mark.slow] if c.slow else []) for c in CASES],
    ids=[c.id for c in CASES],
)
def test_matrix(case: Case, tmp_path, assets, request):
    finalizers: list = []
    request.addfinalizer(lambda: [release() for release in finalizers])
    outcome, root, before = _run_case(case, tmp_path, assets, finalizers)
    shown = f"rc={outcome.rc}\nstderr:\n{outcome.err}\nstdout:\n{outcome.out[-2000:]}"
    assert "Traceback" not in outcome.err + outcome.out, shown
    assert outcome.rc == case.rc, shown
    lines = outcome.error_lines()
    if case.stderr:
        assert len(lines) == 1 and re.search(case.stderr, lines[0]), shown
    else:
        assert lines == [], shown
    if case.rc != 0:  # nothing it was pointed at changed, nothing left behind
        after = snapshot(root)
        assert after == before, sorted(set(after.items()) ^ set(before.items()), key=str)[:5]
        return
    assert lemon_residue(root) == [], shown
    if case.command.startswith("run_lemon"):
        assert (root / "out" / "done").is_file() or (root / "done").is_file()
    if case.check:
        CHECKS[case.check](root, assets, outcome)


def test_every_prior_state_and_check_is_used():
    assert {c.prior for c in CASES} == set(PRIOR) and {c.check for c in CASES} - {""} == set(CHECKS)


# ------------------------------------------------------------------------------------- concurrency
def _logs_of(folder: Path) -> str:
    return (folder / "log.txt").read_text()


def test_blank_captions_are_scored_or_counted(tmp_path, assets):
    """Empty, blank or tab-only captions: the run succeeds (warning about them, so not a matrix row,
    which allows one stderr line), and every input row is either scored or listed with its reason."""
    _own_table(tmp_path, assets, blank=(3, 17, 42))
    argv = _argv(IMG.replace("{data}", "{tmp}/data"), tmp_path, tmp_path / "out", assets)
    outcome = run_cli("run_lemon", argv, tmp_path / "logs")
    assert outcome.rc == 0 and "Traceback" not in outcome.err + outcome.out, outcome.err
    assert any("empty text" in line for line in outcome.error_lines())
    _blank_rows_counted(tmp_path, assets, outcome)


def test_two_runs_at_once_into_one_folder(tmp_path):
    """Two real processes started together: one finishes, the other fails in one line naming why; the
    folder holds one run's files only (args, hyper-parameters and log agree)."""
    out = tmp_path / "out"
    procs = {
        k: start_cli(
            "run_lemon",
            [*RUN.split()[1:], "--knn_k", str(k), "--output_dir", out],
            tmp_path / f"logs{k}",
        )
        for k in (3, 7)
    }
    outcomes = {k: finish(p, tmp_path / f"logs{k}") for k, p in procs.items()}
    winners = [k for k, o in outcomes.items() if o.rc == 0]
    assert len(winners) == 1, outcomes
    (winner,) = winners
    (loser,) = set(outcomes) - {winner}
    lines = outcomes[loser].error_lines()
    assert outcomes[loser].rc == 2 and len(lines) == 1, outcomes[loser]
    assert re.search(
        rf"in use by another run: pid {procs[winner].pid} on \S+, started|already holds a finished run",
        lines[0],
    )
    assert _read(out / "args.json")["knn_k"] == _read(out / "hparams.json")["knn_k"] == winner
    assert f"--knn_k {winner}" in _logs_of(out) and f"--knn_k {loser}" not in _logs_of(out)
    assert lemon_residue(tmp_path) == []


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path, assets):
    """While a run works (stopped mid-run here), another run into its folder exits 2 at once naming the
    holder's pid, host and start time; the first then finishes normally."""
    out = tmp_path / "out"
    shutil.copytree(assets / "finished", out)
    slow = [*RUN.split()[1:3], "--n_synthetic", "2000", "--skip_hparam_optim", "--overwrite"]
    slow += ["--output_dir", out]
    for attempt in range(3):
        holder = start_cli("run_lemon", slow, tmp_path / f"holder{attempt}")
        wait_for(lambda: rundir.staging_dirs(out), what="the first run to start staging")
        os.kill(holder.pid, signal.SIGSTOP)
        lock = tmp_path / ".out.lemon.lock"
        if lock.exists() and _read(lock).get("stage"):
            break
        os.kill(holder.pid, signal.SIGCONT)  # it finished before it was stopped: again
        finish(holder, tmp_path / f"holder{attempt}")
    else:
        pytest.fail("the first run always finished before it could be stopped")
    before = snapshot(out)
    try:
        second = run_cli(
            "run_lemon", [*RUN.split()[1:], "--overwrite", "--output_dir", out], tmp_path / "second"
        )
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    lines = second.error_lines()
    assert second.rc == 2 and len(lines) == 1, second
    assert (
        f"in use by another run: pid {holder.pid} on {socket.gethostname()}, started 20" in lines[0]
    )
    assert str(rundir.staging_dirs(out)[0]) in lines[0]  # where its outputs are until it finishes
    assert snapshot(out) == before
    first = finish(holder, tmp_path / f"holder{attempt}")
    assert first.rc == 0, first.err
    assert _read(out / "args.json")["n_synthetic"] == 2000 and lemon_residue(tmp_path) == []


def test_kill_9_during_an_overwrite_keeps_the_finished_run(tmp_path, assets):
    out = tmp_path / "out"
    shutil.copytree(assets / "finished", out)
    before = snapshot(out)
    victim = start_cli(
        "run_lemon",
        ["--dataset", "synthetic", "--n_synthetic", "2000", "--overwrite", "--output_dir", out],
        tmp_path / "victim",
    )
    wait_for(
        lambda: any((d / "args.json").exists() for d in rundir.staging_dirs(out)),
        what="the run to write into its staging folder",
    )
    os.kill(victim.pid, signal.SIGKILL)
    assert finish(victim, tmp_path / "victim").rc == -signal.SIGKILL
    assert snapshot(out) == before  # byte-identical, 'done' included
    assert lemon_residue(tmp_path)  # its lock and staging folder are left ...
    again = run_cli(
        "run_lemon", [*RUN.split()[1:], "--overwrite", "--output_dir", out], tmp_path / "again"
    )
    assert again.rc == 0 and len(again.error_lines()) == 1, (
        again
    )  # ... and taken over by the next run
    assert f"pid {victim.pid}" in again.err and lemon_residue(tmp_path) == []
    assert "removed what an interrupted run left" in _logs_of(out)


# ---------------------------------------------------------------------------------- lock and commit
def test_a_run_that_has_only_just_taken_the_lock_is_named(tmp_path):
    """Two runs started together: the winner records itself a moment after taking the lock; the loser
    waits for that record instead of blaming 'an unknown process'."""
    fcntl = pytest.importorskip("fcntl")
    import threading

    from lemon.core.errors import RunLockedError

    path, out = tmp_path / ".out.lemon.lock", tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # taken; the holder's record not written yet
    record = json.dumps({"pid": 4242, "host": "node7", "started": "T0"}).encode()
    writer = threading.Timer(0.2, os.pwrite, (fd, record, 0))
    writer.start()
    try:
        with pytest.raises(
            RunLockedError, match="in use by another run: pid 4242 on node7, started T0"
        ):
            RunLock(path, out).acquire()
    finally:
        writer.join()
        os.close(fd)


def test_lock_without_flock_takes_over_only_a_dead_holder(tmp_path):
    """Where flock is not supported the lock file is created exclusively: a holder that no longer runs on
    this host is taken over; a live one, or one on another host, is named (with the file to delete)."""
    from lemon.core.errors import RunLockedError
    from lemon.core.processes import local_job_id

    path, out = tmp_path / ".out.lemon.lock", tmp_path / "out"
    pid = _dead_pid()
    path.write_text(
        json.dumps(
            {
                "id": f"local:{socket.gethostname()}:{pid}:1",
                "pid": pid,
                "host": socket.gethostname(),
            }
        )
    )
    lock = RunLock(path, out)._acquire_exclusive()
    assert lock.recovered["pid"] == pid and _read(path)["pid"] == os.getpid()
    with pytest.raises(
        RunLockedError,
        match=rf"in use by another run: pid {os.getpid()} .*delete {re.escape(str(path))}",
    ):
        RunLock(path, out)._acquire_exclusive()
    lock.release()
    assert not path.exists()
    path.write_text(json.dumps({"id": "local:elsewhere:1:1", "pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunLockedError, match="pid 1 on elsewhere"):
        RunLock(path, out)._acquire_exclusive()
    path.write_text(
        json.dumps(
            {"id": local_job_id(os.getpid()), "pid": os.getpid(), "host": socket.gethostname()}
        )
    )
    with pytest.raises(RunLockedError):
        RunLock(path, out)._acquire_exclusive()


def _stage_a_run(out: Path, overwrite: bool = True, content: str = "new") -> None:
    with rundir.claim(out, overwrite=overwrite) as stage:
        (stage.path / "args.json").write_text(
            json.dumps({"resolved": {}, "environment": {}, "v": content})
        )
        mark_done(stage.path, 0.0)
        stage.commit()


def test_commit_where_the_paths_cannot_be_exchanged(tmp_path, monkeypatch):
    """Without renameat2 (not Linux, or a file system without it) the swap is two renames: same result."""
    out = tmp_path / "out"
    _stage_a_run(out, content="old")
    (out / "report.html").write_text("old page")

    def unsupported(a, b):
        raise OSError(errno.ENOSYS, "no renameat2")

    monkeypatch.setattr(rundir, "_exchange", unsupported)
    _stage_a_run(out)
    assert (
        sorted(os.listdir(out)) == ["args.json", "done"] and _read(out / "args.json")["v"] == "new"
    )
    assert lemon_residue(tmp_path) == []


@pytest.mark.slow  # mounts a file system (15 s)
def test_a_mount_point_is_written_in_place(tmp_path):
    """An output folder that is a mount point cannot be swapped: the lock and the staging folder live
    inside it and the commit moves the files in (done last); a failure there leaves it as it was."""
    if not tmpfs_available():
        pytest.skip("unshare cannot mount a tmpfs here (needs user namespaces)")
    prior = tmp_path / "prior"
    _stage_a_run(prior, content="old")
    (prior / "report.html").write_text("old page")
    mnt = tmp_path / "mnt"
    failed = in_tmpfs(
        mnt,
        4096,
        prior,
        "run_lemon",
        [*RUN.split()[1:], "--knn_k", "1000", "--overwrite", "--output_dir", mnt],
        tmp_path / "back1",
        into="",
    )
    assert failed.rc == 2 and len(failed.error_lines()) == 1, failed
    assert snapshot(tmp_path / "back1") == snapshot(prior)
    done = in_tmpfs(
        mnt,
        4096,
        prior,
        "run_lemon",
        [*RUN.split()[1:], "--overwrite", "--output_dir", mnt],
        tmp_path / "back2",
        into="",
    )
    assert done.rc == 0 and done.error_lines() == [], done
    back = tmp_path / "back2"
    assert (back / "done").is_file() and not (back / "report.html").exists()
    assert _read(back / "args.json")["n_synthetic"] == 400 and lemon_residue(back) == []


def test_a_run_into_the_current_folder_keeps_it(tmp_path, monkeypatch):
    """Swapping the current folder away would strand the shell in a deleted folder: there the files are
    moved in instead, and the current folder shows the new run."""
    out = tmp_path / "out"
    _stage_a_run(out, content="old")
    monkeypatch.chdir(out)
    _stage_a_run(out)
    assert os.getcwd() == str(out) and _read(Path("args.json"))["v"] == "new"
    assert sorted(os.listdir(".")) == ["args.json", "done"] and lemon_residue(tmp_path) == []


# ------------------------------------------------------------------------ two launchers, one sweep
def _two_launchers(tmp_path: Path, wait: bool) -> tuple[list[subprocess.CompletedProcess], Path]:
    """Two real ``sweep.py launch`` processes started together on one sweep of four fast jobs."""
    from sweep_helpers import experiment_source, write_module

    fast = dict(dataset="synthetic", n_synthetic=400, skip_train=True, skip_hparam_optim=True)
    grid = [dict(fast, knn_k=k) for k in (3, 5, 7, 9)]
    module = write_module(tmp_path, "exp_two", experiment_source("two_launchers", grid))
    root = tmp_path / "sweep"
    code = f"import sys, sweep, {module}; sys.exit(sweep.main(sys.argv[1:]))"
    argv = ["launch", "--experiment", "two_launchers", "--output_root", str(root)]
    argv += ["--skip_confirmation", *(["--wait_for_lock"] if wait else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done, root / "two_launchers"


REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two fresh interpreters importing torch: 20 s and more on a loaded machine
@pytest.mark.parametrize("wait", [False, True], ids=["second_stops", "second_waits"])
def test_two_launchers_on_one_sweep(tmp_path, wait):
    """Cases 14 and 24: a second launcher stops in one line naming the one that holds the sweep (or, with
    --wait_for_lock, waits and then launches nothing); every job runs once, no job is called FAILED, and
    every job_output.txt is its own job's."""
    (first, second), folder = _two_launchers(tmp_path, wait)
    outcomes = sorted([first, second], key=lambda p: p.returncode)
    for proc in (first, second):
        assert "Traceback" not in proc.stdout + proc.stderr and "FAILED" not in proc.stdout
    if wait:
        assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
        outs = sorted([first.stdout, second.stdout], key=lambda o: "Launched 4" in o)
        assert "Launched 4 job(s): 4 done" in outs[1]
        assert "waiting: sweep two_launchers" in outs[0] and (
            "Nothing left to launch" in outs[0] or "About to launch 0 job(s)" in outs[0]
        )
    else:
        winner, loser = outcomes
        if loser.returncode == 0:  # the first had finished before the second started: both fine
            assert "About to launch 0 job(s)" in loser.stdout
        else:
            lines = [line for line in loser.stderr.splitlines() if line.strip()]
            assert loser.returncode == 2 and len(lines) == 1, loser.stderr
            assert re.search(
                r"sweep two_launchers in \S+ is in use by another launcher: pid \d+ on \S+, started "
                r"\S+; wait for it to finish or pass --wait_for_lock",
                lines[0],
            )
        assert winner.returncode == 0 and "Launched 4 job(s): 4 done" in winner.stdout
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert len(runs) == 4 and all((run / "done").is_file() for run in runs)
    for run in runs:  # each job's output file is its own run's, whole
        output = (run / JOB_OUTPUT).read_text()
        assert "in use by" not in output
        assert _read(run / "args.json")["output_dir"] == str(run)
        assert "outputs: " + str(run) in output
    assert lemon_residue(tmp_path) == []


# ----------------------------------------------------------------------- an interrupt while committing
def test_ctrl_c_while_committing_finishes_the_swap_first(tmp_path):
    """Ctrl-C (or SIGTERM) while the output folder is swapped takes effect once the swap is done: the
    folder holds the new run whole, never half of each."""
    out = tmp_path / "out"
    _stage_a_run(out, content="old")

    def interrupting_exchange(a, b, real=rundir._exchange):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the commit
        real(a, b)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rundir, "_exchange", interrupting_exchange)
        with pytest.raises(KeyboardInterrupt):
            _stage_a_run(out)
    assert (
        sorted(os.listdir(out)) == ["args.json", "done"] and _read(out / "args.json")["v"] == "new"
    )
    assert lemon_residue(tmp_path) == []
