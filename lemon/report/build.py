"""The report of a run: ``report.html`` to review its suspects in a browser, and ``flagged.csv``.

Usage:
    python -m lemon.report runs/coco                      # writes runs/coco/report.html, report_files/, flagged.csv
    python -m lemon.report runs/coco --audit_size 200 --neighbours 8

The page summarises the run (flag rule, estimated noise rate, metrics, ROC/PR curves, score histograms) and
lets a person review every flagged pair and a random audit sample of all scored pairs, page by page: each
card shows the pair as the user knows it (table row, image file), its thumbnail, the observed label or
caption (and the clean one when known), the suggested fix when scores.csv has one, the score split into its
terms and the neighbours that drove it; buttons (and keys) mark it wrong / right / unsure, and a field holds
the correction. Decisions stay in the browser and download as ``decisions.csv``. The cards' data lives in
``report_files/`` beside the page (see :mod:`lemon.report.review`), so the page stays small and opens
instantly at 100,000 flagged pairs. ``flagged.csv`` lists every sample scores.csv flags (its ``flagged``
column: the val-optimal threshold when the run has labels, else the label-free rule; the rule is named in
hparams.json and on the page).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lemon.core.cli import command
from lemon.core.errors import LemonError
from lemon.core.flags import HelpfulParser
from lemon.core.io import TEMP_SUFFIX, atomic_write_csv, atomic_write_text
from lemon.method.labelfree import is_uncertain_note, wide_interval_line
from lemon.report import page as html
from lemon.report.images import ImageLinks
from lemon.report.inputs import class_names, flag_threshold, flagged_frame, neighbour_rows, read_run
from lemon.report.review import CHUNK, audit_sample, build_pairs, write_queue

log = logging.getLogger(__name__)
#: the folder beside report.html that holds the review's data files and thumbnails
SIDECAR = "report_files"


def run_key(scores_path: Path) -> str:
    """What the page keys its stored decisions by: a hash of scores.csv (same pairs, same positions)."""
    digest = hashlib.sha1()
    with open(scores_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _replace_folder(built: Path, target: Path) -> None:
    """Put the folder ``built`` at ``target``, removing what was there (two renames)."""
    old = None
    if target.exists():
        old = Path(
            tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX)
        )
        os.replace(target, old / target.name)
    os.replace(built, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _notes(
    args: dict, hparams: dict, images: tuple[int, int], has_images: bool, neighbours: bool
) -> list[str]:
    label_free = hparams.get("label_free") or {}
    notes = [f"Label-free rule: {w}" for w in label_free.get("warnings", [])]
    wide = wide_interval_line(label_free) if label_free.get("rate") is not None else None
    if wide and not any(is_uncertain_note(w) for w in label_free.get("warnings", [])):
        notes.insert(0, f"Label-free rule: {wide}")
    if not has_images:
        notes.append("This run has no image references (embedding-only data): no thumbnails.")
    elif images[1]:
        notes.append(
            f"{images[1]} of {sum(images)} images of the pairs to review could not be found under the "
            f"run's data root (--data_dir {args.get('data_dir') or '/ $LEMON_DATA_DIR'})."
        )
    if not neighbours:
        notes.append(
            "Neighbours are not available (no readable neighbours.npz, or the train split was not "
            "scored)."
        )
    return notes


def write_report(
    out_dir: str | Path,
    n_neighbours: int = 5,
    audit_size: int = 100,
    location: str | Path | None = None,
    dest: str | Path | None = None,
) -> Path:
    """Write ``report.html``, its ``report_files/`` and ``flagged.csv`` into a run folder; returns the
    path of report.html.

    Parameters
    ----------
    out_dir : a run_lemon output folder (scores.csv required; args/hparams/metrics.json and neighbours.npz
        used when present — the pipeline calls this before writing ``done``)
    n_neighbours : neighbours shown per side (image look-alikes and, for captions, text look-alikes)
    audit_size : pairs in the audit sample, drawn uniformly from all scored pairs with the run's seed
        (all of them when fewer)
    location : the folder the page names as the run's (default ``out_dir``; the pipeline writes into a
        staging folder that becomes ``--output_dir`` when the run finishes)
    dest : the folder that receives report.html and flagged.csv (default ``out_dir``; another one for a
        run folder that cannot be written)
    """
    run_dir = Path(out_dir)
    target = Path(dest) if dest is not None else run_dir
    if n_neighbours < 0 or audit_size < 0:
        raise LemonError(
            f"--neighbours and --audit_size must be >= 0, got {n_neighbours} and {audit_size}."
        )
    args, hparams, metrics, scores = read_run(run_dir)
    thr_name, threshold = flag_threshold(hparams)
    flagged = flagged_frame(scores, threshold)
    if dest is not None:
        target.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(target / "flagged.csv", flagged)

    n = len(scores)
    if audit_size > n:
        log.warning(
            "--audit_size %d > the %d scored pairs: the audit sample is all of them", audit_size, n
        )
    seed = int(args.get("seed") or 0)
    audit = audit_sample(n, audit_size, seed)
    in_audit, ranks = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    in_audit[audit] = True
    ranks[flagged.index.to_numpy()] = flagged["rank"].to_numpy()
    order = np.argsort(-scores["score"].to_numpy(dtype=float)[audit], kind="stable")
    views = {"flagged": flagged.index.to_numpy(dtype=np.int64), "audit": audit[order]}

    names = class_names(scores, (args.get("resolved") or {}).get("prompt", "A photo of a "))
    pairs = build_pairs(scores, names, hparams, ranks > 0, ranks, in_audit)
    neighbours = neighbour_rows(run_dir, scores, args)
    has_images = "image" in scores
    built = Path(tempfile.mkdtemp(dir=target, prefix=f".{SIDECAR}.", suffix=TEMP_SUFFIX))
    try:
        links = ImageLinks(args, scores, built, SIDECAR) if has_images else None
        queue = write_queue(built, views, pairs, neighbours, scores, n_neighbours, links)
        os.chmod(built, 0o755)
        _replace_folder(built, target / SIDECAR)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    cols, rows = html.metrics_table(metrics)
    task = pairs.task
    document = html.render(
        title=f"Suspected label errors: {args.get('dataset', run_dir.name)} "
        f"({hparams.get('scorer', 'lemon')})",
        run_dir=str(Path(location if location is not None else run_dir).resolve()),
        summary=html.summary(args, hparams, n, len(flagged), (thr_name, threshold)),
        notes=_notes(args, hparams, queue["images"], has_images, bool(neighbours)),
        metric_cols=cols,
        metric_rows=rows,
        plots=html.plots_png(scores, hparams),
        counts=queue["counts"],
        audit_seed=seed,
        task=task,
        has_suggestion=pairs.suggestion is not None,
        class_names=sorted(set(names.values())),
        legend=LEGEND if "s_n" in scores else "Score: higher = more likely mislabelled.",
        sidecar=SIDECAR,
        meta={
            "run_key": run_key(run_dir / "scores.csv"),
            "task": task,
            "chunk": CHUNK,
            "sidecar": SIDECAR,
            "classes": queue["classes"],
            "has_images": has_images,
            "neighbours_known": bool(neighbours),
            "url_base": queue["url_base"],
        },
    )
    path = target / "report.html"
    atomic_write_text(path, document)
    log.info(
        "report: %s (%d flagged pairs at the %s threshold and an audit sample of %d to review)",
        path,
        len(flagged),
        thr_name,
        len(audit),
    )
    return path


LEGEND = (
    "Score = d_mm (how badly the image and its text match) + β·s_n (the image's look-alikes carry "
    "different texts) + γ·s_m (pairs with a similar text show different images); higher = more likely "
    "mislabelled."
)


@command()
def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the report of one run folder and print its path."""
    p = HelpfulParser(prog="python -m lemon.report", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="A run_lemon --output_dir.")
    p.add_argument(
        "--audit_size",
        type=int,
        default=100,
        help="Pairs in the random audit sample, drawn from all scored pairs (default 100).",
    )
    p.add_argument(
        "--neighbours", type=int, default=5, help="Neighbours shown per side (default 5)."
    )
    p.add_argument(
        "--output",
        default=None,
        help="Folder for report.html and flagged.csv (default: the run folder; use it when the run "
        "folder is read-only).",
    )
    args = p.parse_args(argv)
    try:
        path = write_report(args.run_dir, args.neighbours, args.audit_size, dest=args.output)
    except OSError as err:  # a read-only file system, or another user's folder
        import errno

        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        why = "read-only file system" if err.errno == errno.EROFS else "permission denied"
        raise LemonError(
            f"Cannot write the report into {args.output or args.run_dir} ({why}); pass --output DIR "
            "to write report.html and flagged.csv elsewhere."
        ) from err
    print(
        f"report: {path} (open it in a browser; keep {SIDECAR}/ beside it)\n"
        f"flagged samples: {path.parent / 'flagged.csv'}"
    )
    return 0
