"""``mimiccxr_caption``: MIMIC-CXR-JPG chest X-rays paired with their radiology report (FINDINGS +
IMPRESSION sections), official split, CheXpert labels as categories for ``cat`` noise.

One pair per image (dicom); every image of a study shares the study's report. A category is a CheXpert
finding *with its value*: ``positive:Edema``, ``negative:Edema`` or ``uncertain:Edema`` (13 findings, as the
original; 'Support Devices' is not a finding). Images whose report yields no text are dropped and counted
in their split's ``dropped``.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np

from lemon.core.errors import LemonError
from lemon.data.base import Dataset, DatasetSplits
from lemon.data.captioning import _captioning_splits
from lemon.data.files import not_found, read_metadata, require
from lemon.data.registry import DATASETS

log = logging.getLogger(__name__)
FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
)
VALUES = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/()-]*[A-Z)])[ \t]*:", re.MULTILINE)


def report_text(report: str) -> str:
    """'FINDINGS: ... IMPRESSION: ...' from a free-text report (last occurrence of each section wins).

    Without an IMPRESSION section the report's last paragraph stands in for it (as the original's parser
    did); whitespace is collapsed to single spaces. Returns '' when neither section can be found.
    """
    heads = list(_HEADER.finditer(report))
    sections: dict[str, str] = {}
    for h, nxt in zip(heads, heads[1:] + [None]):
        sections[h.group(1).strip()] = " ".join(
            report[h.end() : nxt.start() if nxt else None].split()
        )
    findings, impression = sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")
    if not impression:
        paragraphs = [p for p in re.split(r"\n[ \t]*\n", report) if p.strip()]
        last = _HEADER.sub("", paragraphs[-1], count=1) if paragraphs else ""
        last = " ".join(last.split())
        if last and last != findings and len(paragraphs) > 1:
            impression = last
    parts = [
        f"FINDINGS: {findings}" if findings else "",
        f"IMPRESSION: {impression}" if impression else "",
    ]
    return " ".join(p for p in parts if p)


def _read_report(path: Path) -> str:
    try:
        return report_text(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""


def _csv(d: Path, stem: str) -> Path:
    """``stem.csv.gz`` or ``stem.csv`` (PhysioNet ships the former)."""
    for suffix in (".csv.gz", ".csv"):
        if (d / f"{stem}{suffix}").is_file():
            return d / f"{stem}{suffix}"
    return d / f"{stem}.csv.gz"


def chexpert_categories(values: np.ndarray) -> list[tuple[str, ...]]:
    """Per row of a (n, 13) CheXpert value matrix (1 / 0 / -1 / NaN), the tuple of 'value:Finding' names."""
    names = np.asarray([[f"{v}:{f}" for f in FINDINGS] for v in VALUES.values()], dtype=object)
    n, m = values.shape
    codes = np.full((n, m), -1, dtype=np.int64)
    for k, v in enumerate(VALUES):
        codes[values == v] = k
    return [tuple(names[c, j] for j, c in enumerate(row) if c >= 0) for row in codes.tolist()]


@DATASETS.register("mimiccxr_caption")
class MimicCXRCaption(Dataset):
    """MIMIC-CXR-JPG images + MIMIC-CXR report text, official split, CheXpert categories."""

    task: ClassVar[str] = "captioning"
    noise_types: ClassVar[tuple[str, ...]] = ("random", "cat")
    default_embedder: ClassVar[str | None] = "biomed_clip"

    def check_exists(self, root: Path) -> None:
        d = Path(root) / self.name
        require(
            self.name,
            _csv(d, "mimic-cxr-2.0.0-split"),
            _csv(d, "mimic-cxr-2.0.0-chexpert"),
            d / "files",
            d / "reports" / "files",
        )

    def load(self, root: Path, data_seed: int) -> DatasetSplits:
        import pandas as pd

        self.check_exists(root)
        d = Path(root) / self.name
        need = {
            "split": ("dicom_id", "study_id", "subject_id", "split"),
            "chexpert": ("subject_id", "study_id", *FINDINGS),
        }
        split, labels = (
            read_metadata(
                self.name,
                _csv(d, f"mimic-cxr-2.0.0-{which}"),
                pd.read_csv,
                f"MIMIC-CXR-JPG {which} CSV",
                f"a CSV with columns {', '.join(cols)}",
            )
            for which, cols in need.items()
        )
        for which, frame in (("split", split), ("chexpert", labels)):
            absent = [c for c in need[which] if c not in frame.columns]
            if absent:
                path = _csv(d, f"mimic-cxr-2.0.0-{which}")
                raise LemonError(
                    f"Dataset '{self.name}': {path} lacks columns {absent}. "
                    f"See DataSources.md#{self.name}."
                )
        df = split.merge(labels[list(need["chexpert"])], on=["subject_id", "study_id"], how="inner")
        if df.empty:
            raise not_found(
                self.name,
                _csv(d, "mimic-cxr-2.0.0-chexpert"),
                "no study shared with the split file in",
            )
        subject = df["subject_id"].astype(np.int64).astype(str)
        study = "s" + df["study_id"].astype(np.int64).astype(str)
        folder = "p" + subject.str[:2] + "/p" + subject + "/" + study
        studies = folder.drop_duplicates()
        with ThreadPoolExecutor(max_workers=16) as pool:
            texts = list(
                pool.map(
                    _read_report,
                    [d / "reports" / "files" / f"{s}.txt" for s in studies],
                    chunksize=64,
                )
            )
        text = folder.map(dict(zip(studies, texts))).to_numpy(dtype=object)
        has_text = text != ""
        split_names = df["split"].astype(str).to_numpy()
        relpaths = (
            f"{self.name}/files/" + folder + "/" + df["dicom_id"].astype(str) + ".jpg"
        ).to_numpy()
        categories = chexpert_categories(df[list(FINDINGS)].to_numpy(dtype=np.float64))
        splits = _captioning_splits(
            self.name, Path(root), list(relpaths), text, split_names, categories
        )
        if (~has_text).any():
            log.info(
                "%s: dropped %d images whose report has no FINDINGS/IMPRESSION text",
                self.name,
                int((~has_text).sum()),
            )
        return splits
