"""The run behind a detector: its folder read (finished? which scorer?), its model opened and its reference
set rebuilt from its args.json and the embedding cache only: nothing of the run is embedded again, and what
is gone (an unfinished run, a cleared cache, a moved checkpoint) is a one-line error naming it and the
command that brings it back. The run's folder is only read."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lemon.core.errors import LemonError
from lemon.core.io import DONE, read_json
from lemon.data.features import Features
from lemon.embed.cache import EmbeddingCache

if TYPE_CHECKING:
    from lemon.embed.base import Embedder
    from lemon.scorers.base import Scorer


class DetectorError(LemonError):
    """A run that cannot serve as a detector, or new pairs it cannot score; the message says how to fix it."""


class _CachedOnly(EmbeddingCache):
    """The embedding cache, only read (no lock taken, nothing written): an entry it does not hold, or one
    that fails its checksum, is a one-line error, never computed."""

    def __init__(self, root: Path, missing: str) -> None:
        super().__init__(root)
        self.missing = missing

    def get_or_compute(self, embedder, kind, inputs, compute, content="", unit=True):
        array, problem = (None, None)
        if self.root is not None:
            array, problem = self.read(embedder.id, self.key(embedder, kind, inputs, content))
        if array is None:
            why = f" (its entry {problem})" if problem else ""
            raise DetectorError(
                self.missing.format(kind=kind, n=len(inputs), root=self.root, why=why)
            )
        self.hits += 1
        return array


def read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's args.json and hparams.json, or a one-line error saying why it is no detector."""
    if not run_dir.is_dir():
        raise DetectorError(
            f"Detector {run_dir} not found: pass the --output_dir of a finished python -m run_lemon run."
        )
    for name in ("args.json", "hparams.json"):
        if not (run_dir / name).is_file():
            raise DetectorError(
                f"Detector {run_dir} has no {name}: it is not a run_lemon output folder; pass the "
                "--output_dir of a finished run."
            )
    args = read_json(run_dir / "args.json")
    if not (run_dir / DONE).is_file():
        raise DetectorError(
            f"Detector {run_dir} is not a finished run (no '{DONE}' file): let its run finish, or run "
            f"it again: {rerun_command(args)}"
        )
    if args.get("detector"):
        raise DetectorError(
            f"{run_dir} is itself a detector run (its pairs were scored against {args['detector']}); "
            f"pass {args['detector']} as the detector."
        )
    hparams = read_json(run_dir / "hparams.json")
    for key in ("scorer", "knn_k", "thresholds", "flag_rule"):
        if key not in hparams:
            raise DetectorError(
                f"Detector {run_dir}: its hparams.json has no '{key}' (written by an older lemon); run "
                f"it again: {rerun_command(args)}"
            )
    return args, hparams


def rerun_command(args: dict[str, Any]) -> str:
    """The run_lemon command that reproduces a run from its args.json (flags that differ from the
    defaults), with --overwrite."""
    from lemon.core.flags import flag_fields
    from lemon.run.load import run_config

    cfg = run_config(args)
    words = ["python -m run_lemon"]
    for f in flag_fields(type(cfg)):
        value = getattr(cfg, f.name)
        if value == f.default or value is False or f.name == "overwrite":
            continue
        words.append(f"--{f.name}" if value is True else f"--{f.name} {shlex.quote(str(value))}")
    return " ".join([*words, "--overwrite"])


def model_name(args: dict[str, Any]) -> str:
    """The --clip_model a run embedded with (its own, else its dataset's default)."""
    from lemon.embed.stage import embedder_name

    return embedder_name(str(args.get("dataset")), args.get("clip_model"))


def open_embedder(run_dir: Path, args: dict[str, Any], device: str, precision: str) -> Embedder:
    """The run's model with its precision, checked to be the one that embedded the run (same id)."""
    from lemon.embed import build_embedder

    name, recorded = model_name(args), (args.get("data") or {}).get("embedder_id")
    root = (args.get("data") or {}).get("cache_root")
    try:
        embedder = build_embedder(
            name, device=device, precision=precision, cache_root=Path(root) if root else None
        )
    except LemonError as err:
        if Path(name).expanduser().is_absolute() or "/" in name:
            raise DetectorError(
                f"Detector {run_dir}: its model {name} is gone (moved or deleted): put the checkpoint "
                "folder back at that path, or run the detector again with a model that exists."
            ) from err
        raise DetectorError(
            f"Detector {run_dir}: its model {name} cannot be opened: {err}"
        ) from err
    if recorded and embedder.id != recorded:
        raise DetectorError(
            f"Detector {run_dir}: its model {name} is not the one that embedded it (id {embedder.id}, "
            f"not {recorded}: the checkpoint changed since); restore it, or run the detector again: "
            f"{rerun_command(args)}"
        )
    return embedder


def rebuild(
    run_dir: Path, args: dict[str, Any], hparams: dict[str, Any], device: str
) -> tuple[Scorer, Features, str]:
    """The run's scorer and its features reduced to what scoring new pairs needs (the train split with
    its reference rows, the class names and prompts), read from the cache only; and its precision."""
    from lemon.embed.base import resolve_precision
    from lemon.run.load import load_features, run_config
    from lemon.run.stages import build_scorer
    from lemon.scorers import SCORERS

    name = str(hparams["scorer"])
    if name not in SCORERS or not SCORERS.get(name).streamable:
        able = [n for n in SCORERS.names() if SCORERS.get(n).streamable]
        raise DetectorError(
            f"Detector {run_dir} was scored with '{name}', which does not score a pair from the pair and "
            f"the reference set alone, so it cannot score new pairs; use a run of {', '.join(able)}."
        )
    cfg = run_config(args)
    k = int(hparams["knn_k"])
    data = args.get("data") or {}
    resolved_device = str(args.get("resolved", {}).get("device") or "cpu")
    precision = resolve_precision(cfg.precision, resolved_device)
    if data.get("embedder_id") and precision == "fp16" and not device.startswith("cuda"):
        raise DetectorError(
            f"Detector {run_dir} embedded its pairs in fp16 on {resolved_device}: new pairs must be "
            "embedded the same way, on a CUDA device (device='cuda' / --device cuda)."
        )
    cfg = cfg.replace(precision=precision, cache_dir=data.get("cache_root") or cfg.cache_dir)
    if data.get("embedder_id"):
        open_embedder(run_dir, args, device, precision)  # the model, before any data is read
    from lemon.core.paths import cache_root

    missing = (
        f"Detector {run_dir}: its {{kind}} embeddings ({{n}} inputs) are not in the embedding cache "
        f"{{root}}{{why}} (cleared or moved, or its data changed since it ran); run it again to embed them: "
        f"{rerun_command(args)}"
    )
    try:
        features = load_features(cfg, k, device, _CachedOnly(cache_root(cfg.cache_dir), missing))
    except DetectorError:
        raise
    except LemonError as err:
        raise DetectorError(
            f"Detector {run_dir}: its reference set cannot be rebuilt: {err}"
        ) from err
    if features.fold_train is not None:
        raise DetectorError(
            f"Detector {run_dir} embedded each pair with the model of its fold (--clip_model "
            f"{cfg.clip_model}, trained with --folds): a new pair has no fold; use a run of one model."
        )
    scorer = build_scorer(cfg, k)
    scorer.check(features)
    # keep the train split (memory-mapped where it is stored so) with its reference rows; the other splits
    # and the images are not needed: the reference set is gathered from it once, as the run gathered it
    train = features.splits["train"]
    train.images = None
    features.splits = {"train": train}
    return scorer, features, precision
