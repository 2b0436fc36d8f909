"""``python -m run_lemon --detector runs/A <data flags> --output_dir runs/B``: a run whose scoring is run A's.

The data flags say what to score, as for any run (``--dataset csv --data_path new.csv``, ``--dataset
embeddings --embeddings new.npz``, ...). Every split of that data is embedded with A's model and precision
(through the embedding cache) and scored against A's reference set by :class:`lemon.review.detector.Detector`,
with A's scorer, k, hyper-parameters and threshold; nothing is fitted. Run B's folder is a normal run
folder: args.json (``detector`` = A, ``detector_run`` = what scored it), scores.csv (``flagged`` by A's
threshold, ``detector_idx``), hparams.json (A's, with the detector's description), metrics.json (at A's
thresholds, when B has labels), log.txt, done. The flags that would choose how to score (the scorer, k,
hyper-parameters, the model) are A's: giving one is a one-line error.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lemon.core import io
from lemon.method.evaluate import evaluate_split
from lemon.method.hparams import HPARAM_NAMES
from lemon.review.detector import Detector, DetectorError
from lemon.run import folder, outputs
from lemon.run.config import check_names
from lemon.run.load import load_embedded
from lemon.run.log import run_log
from lemon.run.pipeline import RunResult
from lemon.run.stages import Scored, scored_splits
from lemon.scale import stream

if TYPE_CHECKING:
    from lemon.run.config import RunConfig

log = logging.getLogger("lemon")

#: flags a --detector run takes from the detector (copied into B's args.json from A's)
FROM_DETECTOR = (
    "scorer",
    "dist_type",
    "ablation",
    "normalize_d1",
    "use_discrete_for_text",
    "legacy_discrete_weighting",
    "temperature",
    "compr_dataset_size_limit",
)
#: flags that choose how a run scores or selects: a --detector run refuses them (the detector decides)
REFUSED = (
    *FROM_DETECTOR,
    "lemon_fix",
    "knn_k",
    *HPARAM_NAMES,
    "skip_hparam_optim",
    "subset_val_set",
    "search_budget",
    "score_parts",
    "knn_nlist",
    "knn_nprobe",
)

#: hparams.json keys that say how the neighbours were searched (this run's, not the detector's)
SEARCH_KEYS = ("knn_backend", "knn_search", "knn_reason")


def run_detector(cfg: RunConfig) -> RunResult:
    """Score the data of ``cfg`` with the detector ``cfg.detector`` into ``cfg.output_dir`` (atomically,
    ``done`` last): the --detector branch of ``python -m run_lemon``."""
    start = time.time()
    if cfg.detector is None:
        raise DetectorError("run_detector scores with a detector: pass --detector <its folder>.")
    detector_dir = cfg.detector
    cfg.validate()
    check_names(cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    given = [n for n in REFUSED if getattr(cfg, n) != defaults[n]]
    if given:
        flags = ", ".join(f"--{n}" for n in given)
        raise DetectorError(
            f"{flags}: a --detector run scores with the detector's model, k, hyper-parameters and "
            f"threshold ({cfg.detector}) and fits nothing; drop {flags}."
        )
    out = Path(cfg.output_dir).expanduser()
    a = Path(detector_dir).expanduser().resolve()
    if out.resolve() == a or a in out.resolve().parents:
        raise DetectorError(
            f"--output_dir {out} is inside the detector's own folder {cfg.detector}, which a "
            "detector run never writes into; pass another --output_dir."
        )
    detector = Detector.load(
        detector_dir, device=cfg.device, knn_backend=cfg.knn_backend, cache_dir=cfg.cache_dir
    )
    load_s = time.time() - start
    data_cfg = detector_config(cfg, detector)
    with folder.claim(out, overwrite=cfg.overwrite) as stage:
        with run_log(stage.path, cfg.debug):
            log.info("run_lemon %s", " ".join(sys.argv[1:]))
            for note in stage.notes:
                log.info(note)
            result = _run(data_cfg, detector, stage.path, start, out, load_s)
        stage.commit()
    return dataclasses.replace(result, out_dir=out)


def detector_config(cfg: RunConfig, detector: Detector) -> RunConfig:
    """``cfg`` with what the detector decides (its model, precision, prompt, scorer settings and k): a
    model, precision or prompt given that differs from the detector's is a one-line error."""
    from lemon.data import DATASETS
    from lemon.run.load import run_config

    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}

    a = run_config(detector.args)
    model = detector.model_name
    if model is None and not DATASETS.get(cfg.dataset).precomputed:
        raise DetectorError(
            f"Detector {detector.run_dir} scored precomputed embeddings (--dataset "
            f"{a.dataset}), so it has no model to embed --dataset {cfg.dataset} with; bring the new "
            "pairs as embeddings made the same way (--dataset embeddings --embeddings NEW.npz)."
        )
    same: dict[str, Any] = {"clip_model": model, "precision": detector.precision if model else None}
    same["custom_cifar_prompt"] = detector.prompt if detector.task == "classification" else None
    for name, value in same.items():
        mine = getattr(cfg, name)
        if mine != defaults[name] and value is not None and mine != value:
            raise DetectorError(
                f"--{name} {mine} differs from the detector's ({value}, {detector.run_dir}): a "
                f"--detector run embeds new pairs as the detector embedded its own; drop --{name}."
            )
    changes: dict[str, Any] = {n: getattr(a, n) for n in FROM_DETECTOR}
    changes["knn_k"] = detector.k
    changes.update({n: v for n, v in same.items() if v is not None})
    return cfg.replace(**changes)


def _run(
    cfg: RunConfig, detector: Detector, out: Path, start: float, shown: Path, load_s: float
) -> RunResult:
    """Load and embed the new data, score it with the detector, evaluate it at the detector's thresholds,
    write the run folder (into the staging folder ``out``; ``shown``: where it will be)."""
    clock = {"detector_load_s": load_s}  # imports and A's reference set
    device = detector.device
    args = outputs.write_args(cfg, detector.k, device, out)
    t = time.time()
    features = load_embedded(cfg, device)
    clock["load_features_s"] = time.time() - t
    detector.to_run_classes(features)
    outputs.add_data_provenance(args, features, out)
    if detector.embedder_id and features.provenance.embedder_id not in (None, detector.embedder_id):
        raise DetectorError(
            f"the new pairs were embedded by {features.provenance.embedder_id}, not by the detector's "
            f"model {detector.embedder_id}; drop --clip_model."
        )
    splits = scored_splits(cfg, features)
    n_rows = sum(len(features.splits[s]) for s in splits)
    scored, search = {}, {}
    t = time.time()
    for s in splits:
        scored[s] = detector.score_split(
            features.splits[s], cfg.stream_block, False, cfg.knn_recall_sample, n_rows
        )
        search[s] = detector.last_search
    clock["score_s"] = time.time() - t
    metrics: dict[str, Any] = {}
    for s, o in scored.items():
        metrics.update(
            evaluate_split(o["score"], features.splits[s].is_mislabel, detector.thresholds, s)
        )
        metrics[f"{s}/same_as_detector_pairs"] = search[s]["same_pairs"]
    metrics.update(outputs.dropped_metrics(features))
    metrics["time/knn_s"] = sum(x["knn_s"] for x in search.values())
    for key in ("search/knn_recall_at_k_img", "search/knn_recall_at_k_txt"):
        values = [x[key] for x in search.values() if key in x]
        if values:
            metrics[key] = sum(values) / len(values)
    last = search[splits[-1]] if splits else {}
    description = detector.describe()
    args["detector_run"] = description
    io.atomic_write_json(out / "args.json", args)
    record = {
        **{k: v for k, v in detector.hparams.items() if k not in SEARCH_KEYS},
        "detector": {
            **description,
            "fitted": "nothing: hyper-parameters, thresholds and flag rule are the detector's",
        },
        **{k: last[k] for k in SEARCH_KEYS if k in last},
    }
    parquet = stream.optional_outputs("never", cfg.scores_parquet, n_rows)[1]
    result = Scored(scored, record, keep_neighbours=False, parquet=parquet)
    clock["total_s"] = time.time() - start
    metrics.update({f"time/{name}": s for name, s in clock.items()})
    outputs.write_results(
        out, features, result, detector.threshold, record, metrics, cfg.stream_block
    )
    if cfg.report:
        from lemon.report import write_report

        write_report(out, location=shown)
    log.info("done in %.1f s", time.time() - start)
    io.mark_done(out, time.time() - start)
    build = functools.partial(outputs.all_scores, features, scored, detector.threshold)
    return RunResult(out, record, metrics, build)


def format_detector_summary(result: RunResult) -> str:
    """run_lemon's summary of a --detector run: which run scored it and with which threshold, then the
    usual table (F1 at the detector's thresholds) and flags; nothing about a noise rate of its own."""
    from lemon.run.outputs import RULE_TEXT
    from lemon.run.summary import format_summary

    d = result.hparams["detector"]
    own = {k: v for k, v in result.hparams.items() if k not in ("label_free", "flag_rule")}
    lines = format_summary(dataclasses.replace(result, hparams=own)).splitlines()
    m, rule = result.metrics, d["flag_rule"]
    splits = [s for s in ("train", "val", "test") if f"{s}/n" in m]
    counts = ", ".join(f"{s} {m[f'{s}/n_flagged_{rule}']} of {m[f'{s}/n']}" for s in splits)
    same = sum(m.get(f"{s}/same_as_detector_pairs", 0) for s in splits)
    head = [
        f"detector: {d['detector']} ({d['scorer']}, k={d['k']}, reference set of "
        f"{d['reference_size']} pairs{', model ' + d['model'] if d['model'] else ''}); nothing "
        "fitted: F1_<rule> is F1 at the detector's <rule> threshold",
        f"flagged at the detector's threshold {d['threshold']:.6g} ({rule}: "
        f"{RULE_TEXT.get(rule, rule)}): {counts}"
        + (f"; {same} pairs are the detector's own reference pairs" if same else ""),
    ]
    return "\n".join(head + lines)
