"""Where the report's thumbnails come from: a URL per pair, loaded by the browser only when shown.

The page never embeds the pairs' images: at 100,000 flagged pairs that would make it hundreds of MB. An
image the browser can show that is a file (absolute, or under the table's folder / ``--image_root``, the
data root, ``<data root>/<dataset>``) is linked by its ``file://`` URL; an image held in memory (CIFAR,
the demo: the run's dataset is loaded again, row ``idx`` of its split used when its image id equals the
reference) or in a format browsers do not show (TIFF, ...) is written once as a small file into the
report's sidecar folder and linked relatively. The browser requests a URL only when a page shows its card.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)
#: suffixes every current browser decodes in an <img>
WEB_IMAGES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".avif"})
#: longest side of a thumbnail written into the sidecar folder (tiny images are kept as they are and
#: enlarged by the page with visible pixels)
THUMB_SIDE = 192


class ImageLinks:
    """The URL of each scores.csv row's image, for the rows the report shows (see the module docstring).

    Parameters
    ----------
    args : the run's args.json (data_dir, image_root, data_path, dataset)
    scores : scores.csv as a frame (``image``, ``split``, ``idx`` columns)
    sidecar : the folder the report's own files go into (thumbnails under ``img/``)
    prefix : how the page names ``sidecar`` (relative to report.html)
    """

    def __init__(self, args: dict[str, Any], scores: pd.DataFrame, sidecar: Path, prefix: str):
        from lemon.core.paths import data_root

        root = data_root(args.get("data_dir"))
        roots = [Path(), root, root / str(args.get("dataset", ""))]
        for key in ("image_root", "data_path"):
            if args.get(key):
                path = Path(args[key]).expanduser()
                roots.insert(1, path if key == "image_root" or path.is_dir() else path.parent)
        self.roots = [
            os.path.abspath(r) for r in roots
        ]  # once: a path per image is joined, not resolved
        self.args, self.sidecar, self.prefix = args, sidecar, prefix
        self.refs = scores["image"].tolist()
        self.splits = scores["split"].astype(str).tolist()
        self.idx = scores["idx"].to_numpy()
        self._sources: dict[str, Any] | None = None
        self._last_root = 0

    def urls(self, positions: Iterable[int]) -> dict[int, str | None]:
        """scores.csv position -> URL of its image (None: no reference, file missing or id unmatched)."""
        return {
            int(p): self._url(int(p)) for p in np.unique(np.fromiter(positions, dtype=np.int64))
        }

    def _url(self, pos: int) -> str | None:
        ref = self.refs[pos]
        if not isinstance(ref, str) or not ref:
            return None
        path = self._find(ref)
        if path is not None:
            if os.path.splitext(path)[1].lower() in WEB_IMAGES:
                return "file://" + quote(path)
            return self._write(pos, self._open(Path(path)))
        source, i = self._source(self.splits[pos]), int(self.idx[pos])
        if source is None or not 0 <= i < len(source) or str(source.ids[i]) != ref:
            return None
        return self._write(pos, source[i].convert("RGB"))

    def _find(self, ref: str) -> str | None:
        """The absolute path of the file ``ref`` names, trying the root that found the previous one first."""
        order = [self._last_root, *(i for i in range(len(self.roots)) if i != self._last_root)]
        for i in order:
            candidate = os.path.normpath(os.path.join(self.roots[i], os.path.expanduser(ref)))
            if os.path.isfile(candidate):
                self._last_root = i
                return candidate
        return None

    @staticmethod
    def _open(path: Path):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            log.warning("cannot read image %s for the report: %s", path, err)
            return None

    def _write(self, pos: int, img) -> str | None:
        """Save ``img`` as the sidecar thumbnail of row ``pos``; its URL relative to the page."""
        if img is None:
            return None
        name = f"img/{pos // 1000:04d}/{pos}"
        folder = self.sidecar / name.rsplit("/", 1)[0]
        folder.mkdir(parents=True, exist_ok=True)
        if max(img.size) <= THUMB_SIDE // 2:  # CIFAR, the demo: lossless, the page enlarges them
            name += ".png"
            img.save(self.sidecar / name, format="PNG")
        else:
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            name += ".jpg"
            img.save(self.sidecar / name, format="JPEG", quality=88)
        return f"{self.prefix}/{name}"

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
