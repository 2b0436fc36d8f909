"""``--dataset embeddings --embeddings PATH.npz``: bring embeddings computed elsewhere.

Layout (the one of ``../shared/reference/*/inputs.npz``), for each split S in train, val, test:
``S_img`` (n, d) and ``S_txt`` (n, d) (any norm; normalised here), and either ``S_noisy_label`` (observed
class id; classification) or ``S_noisy_caption`` (observed caption strings; captioning); optionally
``S_label`` / ``S_caption`` (clean), ``S_is_mislabel`` (0/1; derived from clean vs observed when absent) and
``S_pred_probs`` (n, C). Optional ``label_prompt_txt`` (C, d) and ``class_names`` (C strings).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from lemon.core.errors import DatasetNotFoundError, LemonError
from lemon.data.base import DEFAULT_PROMPT, SPLITS, Dataset
from lemon.data.features import Features, Provenance, SplitFeatures
from lemon.data.registry import DATASETS


def features_from_arrays(
    arrays: Mapping[str, np.ndarray],
    prompt: str = DEFAULT_PROMPT,
    class_names: Sequence[str] | None = None,
    source: str = "arrays",
) -> Features:
    """Build :class:`Features` from arrays in the npz layout above (validated, with clear errors)."""
    keys = set(arrays)
    _check_dims(arrays, source)
    missing_splits = [s for s in SPLITS if f"{s}_img" not in keys]
    if missing_splits:
        raise LemonError(
            f"{source}: missing {', '.join(f'{s}_img' for s in missing_splits)}; each of "
            f"train/val/test needs S_img, S_txt and S_noisy_label or S_noisy_caption."
        )
    captioning = "train_noisy_caption" in keys
    if class_names is None and "class_names" in keys:
        class_names = [str(c) for c in arrays["class_names"]]
    splits = {}
    for s in SPLITS:
        need = [f"{s}_txt", f"{s}_noisy_caption" if captioning else f"{s}_noisy_label"]
        absent = [k for k in need if k not in keys]
        if absent:
            raise LemonError(f"{source}: missing {', '.join(absent)} (split '{s}').")
        if captioning:
            observed = np.asarray(arrays[f"{s}_noisy_caption"]).astype(str).astype(object)
            given = arrays.get(f"{s}_caption")
            clean = None if given is None else np.asarray(given).astype(str).astype(object)
            texts = observed
        else:
            observed = np.asarray(arrays[f"{s}_noisy_label"]).astype(np.int64)
            given = arrays.get(f"{s}_label")
            clean = None if given is None else np.asarray(given).astype(np.int64)
            names = (
                class_names
                if class_names is not None
                else [str(c) for c in range(observed.max() + 1)]
            )
            if observed.min() < 0 or observed.max() >= len(names):
                raise LemonError(f"{source}: {s}_noisy_label has ids outside [0, {len(names)}).")
            texts = np.asarray([prompt + str(c) for c in names], dtype=object)[observed]
        is_mislabel: np.ndarray | None
        if f"{s}_is_mislabel" in keys:
            is_mislabel = np.asarray(arrays[f"{s}_is_mislabel"]).astype(bool)
        else:
            is_mislabel = None if clean is None else clean != observed
        pred_probs = arrays.get(f"{s}_pred_probs")
        splits[s] = SplitFeatures(
            s,
            np.asanyarray(arrays[f"{s}_img"]),  # a memory map stays one (no copy of large splits)
            np.asanyarray(arrays[f"{s}_txt"]),
            texts,
            observed,
            clean,
            is_mislabel,
            None if pred_probs is None else np.asarray(pred_probs, dtype=np.float64),
        )
    prompts = arrays.get("label_prompt_txt")
    return Features(
        "captioning" if captioning else "classification",
        splits,
        None if prompts is None else np.asarray(prompts),
        None if captioning else class_names,
        provenance=Provenance(source=source),
    )


#: how many dimensions each array of the layout has: (n, d) embeddings and probabilities, (n,) per pair
_MATRICES = ("img", "txt", "pred_probs")
_VECTORS = ("noisy_label", "label", "noisy_caption", "caption", "is_mislabel")


def _check_dims(arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Each array has the number of dimensions of its role (e.g. ``S_img`` (n, d)): a one-line error."""
    for key, value in arrays.items():
        split, _, role = key.partition("_")
        if key == "label_prompt_txt" or (split in SPLITS and role in _MATRICES):
            want, shape = 2, "(n, d)" if role != "pred_probs" else "(n, C)"
        elif (split in SPLITS and role in _VECTORS) or key == "class_names":
            want, shape = 1, "(n,)"
        else:
            continue
        ndim = np.ndim(value)
        if ndim != want:
            raise LemonError(
                f"{source}: {key} must be a {want}-D array {shape}, got shape "
                f"{np.shape(value)}; save it with that shape (e.g. x.reshape(len(x), -1) for "
                "one embedding per row)."
            )


@DATASETS.register("embeddings")
class PrecomputedEmbeddings(Dataset):
    """Embeddings from an npz file (``--embeddings``); task inferred from its keys."""

    task: ClassVar[str] = "any"
    noise_types: ClassVar[tuple[str, ...]] = ()
    precomputed: ClassVar[bool] = True

    def load_features(self) -> Features:
        path = Path(self.options.embeddings or "").expanduser()
        if not path.is_file():
            raise DatasetNotFoundError(
                f"Embeddings file not found: {path}. Pass --embeddings PATH.npz "
                f"(layout: docs/data.md, 'Bring your own embeddings')."
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise LemonError(
                f"Cannot read {path} as an .npz of arrays ({err}); write it with np.savez "
                f"and no object arrays (store strings as str arrays)."
            ) from err
        return features_from_arrays(arrays, prompt=self.options.prompt, source=str(path))
