"""Programs the reliability matrix runs as child processes where a plain command line cannot show the
case: a user's Python script calling the API, and run_lemon on a machine whose torch and torchvision do
not match (simulated in the child by patching what the installed packages report and what importing
torchvision does). ``reliability_helpers.run_cli("reliability_programs", [name, *args])`` calls
``main``; each program returns the exit code a user's shell would see.
"""

from __future__ import annotations

import importlib.abc
import sys
import warnings
from collections.abc import Sequence


def _one_line_warnings() -> None:
    """A user's script showing warnings as one line each (Python's default adds the source line)."""
    warnings.formatwarning = lambda message, category, *rest: f"{category.__name__}: {message}\n"


def api_class_names(argv: Sequence[str]) -> int:
    """find_label_issues on a table's images with its class names as ``labels=`` and no ``texts=``:
    writes the scores beside those of the same pairs given as class ids with their prompts."""
    import numpy as np
    import pandas as pd

    import lemon

    table, model, cache, out = argv
    _one_line_warnings()
    df = pd.read_csv(table)
    images = [str((__import__("pathlib").Path(table).parent / p).resolve()) for p in df["image"]]
    options = dict(images=images, model=model, cache_dir=cache, device="cpu", k=5)
    named = lemon.score_pairs(labels=list(df["label"]), **options)
    names, ids = np.unique(df["label"].to_numpy(dtype=str), return_inverse=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference call: its label-free notes are not the case
        explicit = lemon.score_pairs(
            labels=ids.reshape(-1), texts=[f"A photo of a {n}" for n in names[ids]], **options
        )
    pd.DataFrame({"named": named["lemon_score"], "explicit": explicit["lemon_score"]}).to_csv(
        out, index=False
    )
    return 0


class _BrokenTorchvision(importlib.abc.MetaPathFinder):
    """Importing torchvision fails as a CUDA torchvision fails beside a CPU-only torch."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def mismatched_torch(argv: Sequence[str]) -> int:
    """run_lemon where the installed torch/torchvision report ``argv[0]``/``argv[1]`` and (``argv[2]``
    == 'broken') importing torchvision fails; the rest of ``argv`` is run_lemon's."""
    from importlib import metadata

    torch_version, vision_version, how, *rest = argv
    real = metadata.version

    def version(name: str) -> str:
        return {"torch": torch_version, "torchvision": vision_version}.get(name) or real(name)

    metadata.version = version
    if how == "broken":
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, _BrokenTorchvision())
    import run_lemon

    return run_lemon.main(list(rest))


PROGRAMS = {"api_class_names": api_class_names, "mismatched_torch": mismatched_torch}


def main(argv: Sequence[str]) -> int:
    return PROGRAMS[argv[0]](argv[1:])
