"""A self-contained HTML report of a run's most suspicious pairs — what a data team opens first.

Usage:
    python -m lemon.report runs/coco                 # writes runs/coco/report.html and flagged.csv
    python -m lemon.report runs/coco --top 100 --neighbours 8

For the top-N pairs by score (all scored splits pooled): a thumbnail (when the ``image`` column of scores.csv
resolves to a file), the observed caption / label (and the clean one when known), the score split into its
terms (d_mm + beta * s_n + gamma * s_m), and the neighbours that drove it — the reference pairs whose images
look alike (their captions) and whose captions read alike (their images), from neighbours.npz. Then ROC and
PR curves and the score histogram per split (matplotlib PNGs) and the metrics. Everything is embedded
(base64), so the one file can be mailed. ``flagged.csv`` lists every sample scores.csv flags (its
``flagged`` column: the val-optimal threshold when the run has labels, else the label-free rule; the rule is
named in hparams.json and on the page).
"""

from __future__ import annotations

import base64
import io as _bytes
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lemon.core.errors import LemonError, one_line_errors
from lemon.core.flags import HelpfulParser
from lemon.core.io import atomic_write_csv, atomic_write_text, read_json
from lemon.report.page import page, plots_png, suspect_row

log = logging.getLogger(__name__)
COMPONENTS = ("d_mm", "s_n", "s_m")


class Thumbnails:
    """Images of scores.csv rows as JPEG data URIs (memoised).

    The ``image`` reference is tried as a file (absolute, or under the table's folder / ``--image_root``, the
    data root, ``<data root>/<dataset>``); otherwise the run's dataset is loaded again (in-memory images such
    as CIFAR or the demo set) and row ``idx`` of its split is used when its image id equals the reference.
    """

    def __init__(self, args: dict[str, Any]) -> None:
        from lemon.core.paths import data_root

        root = data_root(args.get("data_dir"))
        self.roots = [Path(), root, root / str(args.get("dataset", ""))]
        for key in ("image_root", "data_path"):
            if args.get(key):
                path = Path(args[key]).expanduser()
                self.roots.insert(1, path if key == "image_root" or path.is_dir() else path.parent)
        self.args = args
        self._sources: dict[str, Any] | None = None
        self._cache: dict[tuple[str, int, int], str | None] = {}
        self.found = self.missing = 0

    def __call__(self, row: pd.Series, size: int) -> str | None:
        key = (str(row["split"]), int(row["idx"]), size)
        if key not in self._cache:
            self._cache[key] = self._encode(self._image(row), size)
            if size >= 96:  # count each pair's main thumbnail once
                self.found += self._cache[key] is not None
                self.missing += self._cache[key] is None
        return self._cache[key]

    def _image(self, row: pd.Series):
        from PIL import Image, UnidentifiedImageError

        ref = row.get("image")
        if not isinstance(ref, str) or not ref:
            return None
        path = next((base / ref for base in self.roots if (base / ref).is_file()), None)
        if path is not None:
            try:
                with Image.open(path) as img:
                    return img.convert("RGB")
            except (OSError, UnidentifiedImageError) as err:
                log.warning("cannot read image %s for the report: %s", path, err)
                return None
        source, i = self._source(str(row["split"])), int(row["idx"])
        if source is None or not 0 <= i < len(source) or str(source.ids[i]) != ref:
            return None
        return source[i].convert("RGB")

    def _source(self, split: str):
        if self._sources is None:
            self._sources = self._load_sources()
        return self._sources.get(split)

    def _load_sources(self) -> dict[str, Any]:
        """The dataset's image sources per split ({} for embedding-only datasets or when it cannot load)."""
        from lemon.data import DATASETS
        from lemon.data.base import DataOptions

        try:
            dataset = DATASETS.get(self.args["dataset"])(DataOptions.from_flags(self.args))
            if dataset.precomputed:
                return {}
            from lemon.data.loading import load_splits

            splits = load_splits(dataset)
        except Exception as err:
            log.warning(
                "report: cannot reload dataset %r for thumbnails (%s)",
                self.args.get("dataset"),
                err,
            )
            return {}
        return {s: p.images for s, p in splits.splits.items() if p.images is not None}

    @staticmethod
    def _encode(img, size: int) -> str | None:
        if img is None:
            return None
        scale = size / max(img.size)
        if scale > 1:  # tiny images (CIFAR, demo): enlarge with visible pixels rather than blur
            from PIL import Image

            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.NEAREST)
        else:
            img.thumbnail((size, size))
        buf = _bytes.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _read_run(run_dir: Path) -> tuple[dict, dict, dict, pd.DataFrame]:
    if not run_dir.is_dir():
        raise LemonError(
            f"Run folder {run_dir} does not exist; pass the --output_dir of a run_lemon run."
        )
    scores_path = run_dir / "scores.csv"
    if not scores_path.is_file():
        raise LemonError(
            f"{run_dir} has no scores.csv: not a run_lemon output folder, or the run did not "
            "get as far as scoring (see its log.txt)."
        )

    def read(name):
        return read_json(run_dir / name) if (run_dir / name).is_file() else {}

    try:
        scores = pd.read_csv(scores_path, keep_default_na=False, na_values=[""])
        args, hparams, metrics = read("args.json"), read("hparams.json"), read("metrics.json")
    except (ValueError, OSError) as err:
        raise LemonError(
            f"Cannot read the outputs in {run_dir} ({err}); re-run it with --overwrite."
        ) from err
    missing = {"split", "score"} - set(scores.columns)
    if missing:
        raise LemonError(
            f"{scores_path} lacks column(s) {', '.join(sorted(missing))}; re-run the run with "
            "--overwrite."
        )
    return args, hparams, metrics, scores


def flag_threshold(hparams: dict) -> tuple[str, float | None]:
    """The rule that flags samples and its threshold: hparams.json's ``flag_rule`` (written by the
    pipeline); for older runs without it, ``optimal`` when the run had labels, else ``heuristic``."""
    thresholds = hparams.get("thresholds") or {}
    rule = hparams.get("flag_rule")
    for name in (rule,) if rule in thresholds else ("optimal", "heuristic"):
        if thresholds.get(name) is not None:
            return name, float(thresholds[name])
    return "none", None


def _neighbours(run_dir: Path, scores: pd.DataFrame, args: dict) -> dict[str, np.ndarray]:
    """``{split}_idx_{n,m}`` as rows of ``scores`` (-1: not in scores.csv); {} when unavailable."""
    path = run_dir / "neighbours.npz"
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # EOFError: an empty file
        log.warning(
            "%s is not a readable .npz (%s: %s); the neighbour panels are left out of the report "
            "(re-run the run with --overwrite to rewrite it)",
            path,
            type(err).__name__,
            str(err).split(". ")[0] or "empty",
        )
        return {}
    train_rows = np.flatnonzero(scores["split"].to_numpy() == "train")
    reference = arrays.pop("reference_index", None)
    if reference is None and len(train_rows) <= int(args.get("compr_dataset_size_limit") or 0):
        reference = np.arange(
            len(train_rows)
        )  # uncapped: the reference set is the whole train split
    if reference is None or len(train_rows) == 0 or len(reference) == 0:
        log.warning(
            "%s: neighbour ids cannot be mapped to train rows (train not scored or capped reference "
            "without reference_index); neighbours are left out of the report",
            path,
        )
        return {}
    ref_to_row = np.full(len(reference), -1, dtype=np.int64)
    ok = reference < len(train_rows)
    ref_to_row[ok] = train_rows[reference[ok]]
    out = {}
    for key, ids in arrays.items():
        if key.endswith(("_idx_n", "_idx_m")):
            valid = (ids >= 0) & (ids < len(ref_to_row))
            out[key] = np.where(valid, ref_to_row[np.where(valid, ids, 0)], -1)
    return out


def _class_names(scores: pd.DataFrame, prompt: str) -> dict[Any, str]:
    """Class id -> name, read off the prompts of samples observed with that class (classification)."""
    if "observed_label" not in scores or "text" not in scores:
        return {}
    pairs = scores.drop_duplicates("observed_label")[["observed_label", "text"]]
    if not pd.api.types.is_integer_dtype(pairs["observed_label"]):
        return {}

    def strip(t):
        return t[len(prompt) :] if prompt and str(t).startswith(prompt) else str(t)

    return {label: strip(text) for label, text in zip(pairs["observed_label"], pairs["text"])}


def flagged_frame(scores: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """The samples scores.csv flags (its ``flagged`` column; ``score >= threshold`` for runs without
    it), most suspicious first, with their rank."""
    if "flagged" in scores:
        mask = scores["flagged"].astype(str).str.lower().isin(("true", "1")).to_numpy()
    elif threshold is None:
        return scores.iloc[0:0]
    else:
        mask = (scores["score"] >= threshold).to_numpy()
    flagged = scores[mask].sort_values("score", ascending=False, kind="stable")
    flagged.insert(0, "rank", np.arange(1, len(flagged) + 1))
    return flagged


def write_report(
    out_dir: str | Path,
    top_n: int = 50,
    n_neighbours: int = 5,
    location: str | Path | None = None,
    dest: str | Path | None = None,
) -> Path:
    """Write ``report.html`` (and ``flagged.csv``) into a run folder; returns the path of report.html.

    Parameters
    ----------
    out_dir : a run_lemon output folder (scores.csv required; args/hparams/metrics.json and neighbours.npz
        used when present — the pipeline calls this before writing ``done``)
    top_n : number of most suspicious pairs shown (all splits pooled, highest score first)
    n_neighbours : neighbours shown per side (image look-alikes and text look-alikes)
    location : the folder the page names as the run's (default ``out_dir``; the pipeline writes into a
        staging folder that becomes ``--output_dir`` when the run finishes)
    dest : the folder that receives report.html and flagged.csv (default ``out_dir``; another one for a
        run folder that cannot be written)
    """
    run_dir = Path(out_dir)
    target = Path(dest) if dest is not None else run_dir
    if top_n < 1 or n_neighbours < 0:
        raise LemonError(
            f"top_n must be >= 1 and n_neighbours >= 0, got {top_n} and {n_neighbours}."
        )
    args, hparams, metrics, scores = _read_run(run_dir)
    thr_name, threshold = flag_threshold(hparams)
    flagged = flagged_frame(scores, threshold)
    if dest is not None:
        target.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(target / "flagged.csv", flagged)

    position = scores.groupby("split", sort=False).cumcount().to_numpy()
    neighbours = _neighbours(run_dir, scores, args)
    names = _class_names(scores, (args.get("resolved") or {}).get("prompt", "A photo of a "))
    thumbs = Thumbnails(args) if "image" in scores else None
    top = scores.sort_values("score", ascending=False, kind="stable").head(top_n)
    rows = []
    for rank, (row_id, row) in enumerate(top.iterrows(), start=1):
        nbrs = {}
        for side in ("n", "m"):
            ids = neighbours.get(f"{row['split']}_idx_{side}")
            if ids is not None and n_neighbours:
                ids = ids[position[row_id], :n_neighbours]
                nbrs[side] = [scores.loc[i] for i in ids[ids >= 0]]
        rows.append(suspect_row(rank, row, nbrs, hparams, names, thumbs, threshold))
    title = f"Suspected label errors: {args.get('dataset', run_dir.name)} ({hparams.get('scorer', 'lemon')})"
    document = page(
        title=title,
        run_dir=Path(location) if location is not None else run_dir,
        args=args,
        hparams=hparams,
        metrics=metrics,
        scores=scores,
        rows=rows,
        plots=plots_png(scores, hparams),
        n_flagged=len(flagged),
        threshold=(thr_name, threshold),
        neighbours_known=bool(neighbours),
        thumbs=(thumbs.found, thumbs.missing) if thumbs else (0, 0),
        has_image_column=thumbs is not None,
    )
    path = target / "report.html"
    atomic_write_text(path, document)
    log.info(
        "report: %s (%d pairs shown, %d flagged at the %s threshold)",
        path,
        len(rows),
        len(flagged),
        thr_name,
    )
    return path


@one_line_errors
def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write the report of one run folder and print its path."""
    p = HelpfulParser(prog="python -m lemon.report", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="A run_lemon --output_dir.")
    p.add_argument("--top", type=int, default=50, help="Most suspicious pairs shown (default 50).")
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
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = write_report(args.run_dir, args.top, args.neighbours, dest=args.output)
    except OSError as err:  # a read-only file system, or another user's folder
        import errno

        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        why = "read-only file system" if err.errno == errno.EROFS else "permission denied"
        raise LemonError(
            f"Cannot write the report into {args.output or args.run_dir} ({why}); pass --output DIR "
            "to write report.html and flagged.csv elsewhere."
        ) from err
    print(f"report: {path}\nflagged samples: {path.parent / 'flagged.csv'}")
    return 0
