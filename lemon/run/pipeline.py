"""The one pipeline: data -> noise -> embed (cached) -> neighbours -> score -> select -> evaluate -> write.

Every method (LEMoN and each baseline) goes through :func:`run`; only the scorer differs. This is the only
place a :class:`~lemon.run.config.RunConfig` is unpacked: the stages below take their own explicit options.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lemon.core import io
from lemon.core.device import resolve_device
from lemon.core.errors import LemonError
from lemon.core.npy import blocks
from lemon.core.paths import cache_root
from lemon.data import DATASETS
from lemon.data.features import Features
from lemon.method.evaluate import best_f1, evaluate_split, select_thresholds
from lemon.method.hparams import DEFAULT_KNN_K, HPARAM_NAMES, LEMON_FIX_K
from lemon.method.labelfree import label_free_rule
from lemon.neighbors import KnnOptions
from lemon.neighbors.base import check_k
from lemon.run import folder as rundir
from lemon.run.config import RunConfig, check_names, execution_fields, field_names
from lemon.scale import parts, stream
from lemon.scorers import SCORERS
from lemon.scorers.base import Scorer, ScorerOptions, ScoringContext

if TYPE_CHECKING:
    from lemon.data.base import Dataset, DatasetSplits
    from lemon.embed.base import Embedder
    from lemon.embed.cache import EmbeddingCache
    from lemon.embed.folds import FoldModel

log = logging.getLogger("lemon")
SUMMARY_KEYS = ("AUROC", "AUPRC", "F1_optimal", "F1_prevalence", "F1_heuristic", "F1_label_free")


@dataclass
class RunResult:
    """What a finished run produced (also on disk in ``out_dir``)."""

    out_dir: Path
    hparams: dict[str, Any]
    metrics: dict[str, Any]
    build_scores: Callable[[], pd.DataFrame] = field(repr=False, compare=False)

    @functools.cached_property
    def scores(self) -> pd.DataFrame:
        """scores.csv as one frame, built on first use (the run writes it block by block: at millions
        of pairs this frame is a copy of every row)."""
        return self.build_scores()


def resolve_k(cfg: RunConfig) -> int:
    """--knn_k, else 30 with --lemon_fix or --real_dataset (without labels LEMoN_FIX is the setting),
    else the dataset's default_knn_k, else the original's 5."""
    if cfg.knn_k is not None:
        return cfg.knn_k
    if cfg.lemon_fix or cfg.real_dataset:
        return LEMON_FIX_K
    dataset_k = DATASETS.get(cfg.dataset).default_knn_k if cfg.dataset in DATASETS else None
    return dataset_k or DEFAULT_KNN_K


def scorer_options(cfg: RunConfig, k: int) -> ScorerOptions:
    """What the scorer reads of the run."""
    return ScorerOptions(
        k=k,
        dist_type=cfg.dist_type,
        ablation=cfg.ablation,
        normalize_d1=cfg.normalize_d1,
        use_discrete_for_text=cfg.use_discrete_for_text,
        legacy_discrete_weighting=cfg.legacy_discrete_weighting,
        fixed=cfg.fixed_hparams,
        select=not (cfg.skip_hparam_optim or cfg.real_dataset),
        temperature=cfg.temperature,
        seed=cfg.seed,
        search_budget=cfg.search_budget,
        **{name: getattr(cfg, name) for name in MODEL_SCORER_FLAGS},
        num_workers=cfg.num_workers,
        precision=cfg.precision,
        cache_dir=str(cache_root(cfg.cache_dir)),
    )


#: run flags handed unchanged to the model- and training-based baselines
MODEL_SCORER_FLAGS = (
    "blip_model",
    "blip_mode",
    "capfilt_mode",
    "blip_captioner",
    "llava_model",
    "llava_answer",
    "vdc_llm",
    "vdc_vqa",
    "vdc_questions",
    "vdc_judge",
    "vdc_question_tokens",
    "vdc_answer_tokens",
    "model_batch_size",
    "dynamics_epochs",
    "dynamics_lr",
    "dynamics_batch_size",
)


def load_dataset(cfg: RunConfig) -> tuple[Dataset, str | None]:
    """The run's dataset and the canonical name of its noise type (an unsupported one fails here)."""
    from lemon.noise import NOISES

    dataset = DATASETS.get(cfg.dataset)(cfg.data_options())
    # aliases (e.g. 'pairflip') name the same noise as their canonical name; unknown names fail here
    noise_name = None if cfg.noise_type is None else NOISES.canonical(cfg.noise_type)
    if noise_name is not None and noise_name not in dataset.noise_types:
        supported = (
            ", ".join(dataset.noise_types) or "none (the data carries its own observed labels)"
        )
        raise LemonError(
            f"Noise type '{cfg.noise_type}' is not supported for dataset '{cfg.dataset}'; "
            f"supported: {supported}."
        )
    return dataset, noise_name


def embedding_inputs(
    cfg: RunConfig, dataset: Dataset, noise_name: str | None, device: str
) -> tuple[DatasetSplits, Embedder | FoldModel, EmbeddingCache]:
    """What the embedding stage embeds (the noisy splits), with which model (one embedder, or the K
    models of a ``--folds`` training), into which cache.

    The model comes first: weights that cannot be had offline fail before any data is read.
    ``python -m lemon.embed`` calls this too, so sharded embedding fills exactly the entries a run reads.
    """
    from lemon.data.loading import load_splits
    from lemon.embed.cache import EmbeddingCache
    from lemon.embed.folds import open_model
    from lemon.embed.stage import embedder_name
    from lemon.noise import apply_noise

    cache = EmbeddingCache(cache_root(cfg.cache_dir))
    model = open_model(
        embedder_name(cfg.dataset, cfg.clip_model),
        device=device,
        precision=cfg.precision,
        cache=cache,
    )
    splits = load_splits(dataset)
    if not cfg.real_dataset:
        noise_type = noise_name or dataset.noise_types[0]
        splits = apply_noise(splits, noise_type, cfg.resolved_noise_level, cfg.data_seed)
    return splits, model, cache


def load_features(cfg: RunConfig, k: int, device: str) -> Features:
    """Dataset -> (noise) -> embeddings, then the seeded reference cap and the val subset."""
    dataset, noise_name = load_dataset(cfg)
    if dataset.precomputed:
        if not dataset.noise_types and cfg.noise_level is not None:
            raise LemonError(
                f"--noise_level is not used with --dataset {cfg.dataset}: the data carries its "
                "own observed labels; drop --noise_level."
            )
        features = dataset.load_features()
    else:
        from lemon.embed.folds import embed_with

        splits, model, cache = embedding_inputs(cfg, dataset, noise_name, device)
        features = embed_with(
            model,
            splits,
            cache,
            prompt=dataset.options.prompt,
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            image_identity=cfg.image_identity,
            image_decode=cfg.image_decode,
        )
    if cfg.real_dataset:
        for split in features.splits.values():
            split.clean = split.is_mislabel = None
    features.cap_reference(cfg.compr_dataset_size_limit, np.random.default_rng([cfg.data_seed, 1]))
    n_val = len(features.splits["val"])
    if cfg.subset_val_set is not None and 0 < cfg.subset_val_set < n_val:
        pick = np.random.default_rng([cfg.data_seed, 2]).choice(
            n_val, cfg.subset_val_set, replace=False
        )
        features.splits["val"] = features.splits["val"].subset(np.sort(pick))
    check_k(k, len(features.reference_index))
    return features


def load_run_features(run_dir: str | Path, device: str) -> tuple[Features, dict[str, Any]]:
    """The features a finished run scored, rebuilt from its args.json (embeddings from the cache), and
    those args: what a downstream step (:mod:`lemon.downstream`) trains on."""
    args = json.loads((Path(run_dir) / "args.json").read_text(encoding="utf-8"))
    names = set(field_names())
    cfg = RunConfig(**{k: v for k, v in args.items() if k in names})
    k = args.get("resolved", {}).get("knn_k") or resolve_k(cfg)
    return load_features(cfg, k, device), args


def scored_splits(cfg: RunConfig, features: Features) -> list[str]:
    """The splits a run scores, in order (train left out with --skip_train)."""
    return [
        s
        for s in ("train", "val", "test")
        if s in features.splits and not (s == "train" and cfg.skip_train)
    ]


def part_plan_folder(
    cfg: RunConfig, k: int, features: Features, splits: list[str], device: str
) -> Path:
    """Where the parts of a run scored in parts live: named by what decides its scores (the identity
    flags, k, the search backend, the embedder and its precision, the scored splits' sizes)."""
    from lemon.core.version import __version__
    from lemon.embed.base import resolve_precision

    identity = {n: v for n, v in cfg.to_dict().items() if n not in execution_fields()}
    identity.update(
        knn_k=k,
        knn_backend=cfg.knn_backend,
        data_dir=cfg.data_dir,
        custom_cifar_prompt=cfg.custom_cifar_prompt,
        precision=resolve_precision(cfg.precision, device),
        embedder=features.provenance.embedder_id,
        sizes={s: len(features.splits[s]) for s in splits},
        lemon=__version__,
    )
    return parts.plan_folder(cache_root(cfg.cache_dir), identity, cfg.score_parts)


def score_one_part(cfg: RunConfig, part: int) -> parts.PartPlan:
    """A part job of ``python -m lemon.scale.parts``: score part ``part`` into the plan (written beforehand by
    the :func:`run` that launched the job, with the same flags); returns the plan."""
    cfg.validate()
    k = resolve_k(cfg)
    scorer = SCORERS.get(cfg.scorer)(scorer_options(cfg, k))
    device = resolve_device(cfg.device)
    features = load_features(cfg, k, device)
    splits = scored_splits(cfg, features)
    plan = parts.read_plan(part_plan_folder(cfg, k, features, splits, device))
    ctx = ScoringContext(features, knn=knn_options(cfg, device))
    parts.score_part(plan, part, scorer, ctx, cfg.stream_block)
    return plan


def knn_options(cfg: RunConfig, device: str) -> KnnOptions:
    """How the run searches neighbours."""
    return KnnOptions(
        backend=cfg.knn_backend,
        device=device,
        nlist=cfg.knn_nlist,
        nprobe=cfg.knn_nprobe,
        recall_sample=cfg.knn_recall_sample,
        seed=cfg.seed,
    )


class _RunLog(logging.FileHandler):
    """log.txt of a run: a failed write (e.g. a full disk) is kept to fail the run, not printed."""

    error: OSError | None = None

    def handleError(self, record: logging.LogRecord) -> None:
        failure = sys.exc_info()[1]
        if isinstance(failure, OSError) and self.error is None:
            self.error = failure
        elif not isinstance(failure, OSError):
            super().handleError(record)


def _attach_log(out: Path, debug: bool) -> _RunLog:
    handler = _RunLog(out / "log.txt", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    return handler


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Route warnings raised during a run into the run's log (and the console) as one line each."""
    log.warning("%s: %s", category.__name__, message)


def environment() -> dict[str, Any]:
    """Versions and host facts for args.json (provenance)."""
    import sklearn
    import torch

    try:
        sha = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
                check=False,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "cuda": torch.version.cuda,
        "host": platform.node(),
        "git_sha": sha,
        "argv": sys.argv,
    }


def score_rows(
    features: Features,
    split: str,
    out: dict[str, np.ndarray],
    threshold: float,
    start: int,
    stop: int,
) -> pd.DataFrame:
    """Rows ``[start, stop)`` of scored ``split`` as scores.csv has them: split, idx, row, image, labels,
    is_mislabel, score and its 1-D components, and ``flagged`` (score >= ``threshold``)."""
    f, rows = features.splits[split], slice(start, stop)
    n = stop - start
    cols: dict[str, Any] = {"split": split, "idx": f.ids[rows]}
    cols["row"] = (f.source_rows if f.source_rows is not None else f.ids)[rows]
    if f.image_refs is not None:
        cols["image"] = list(f.image_refs[rows])
    cols["clean_label"] = f.clean[rows] if f.clean is not None else np.full(n, None)
    cols["observed_label"] = f.observed[rows]
    cols["text"] = f.texts[rows]
    cols["is_mislabel"] = (
        f.is_mislabel[rows].astype(int) if f.is_mislabel is not None else np.full(n, None)
    )
    cols["score"] = out["score"][rows]
    cols.update({k: v[rows] for k, v in out.items() if k != "score" and np.ndim(v) == 1})
    cols["flagged"] = out["score"][rows] >= threshold
    return pd.DataFrame(cols)


def score_blocks(
    features: Features,
    outputs: dict[str, dict[str, np.ndarray]],
    threshold: float,
    block_rows: int,
) -> Iterator[pd.DataFrame]:
    """scores.csv's rows, split by split, ``block_rows`` at a time: written as they come, so a run of
    millions of pairs never holds them all as one frame."""
    for split, out in outputs.items():
        for start, stop in blocks(len(features.splits[split]), block_rows):
            yield score_rows(features, split, out, threshold, start, stop)


def score_columns(
    features: Features, outputs: dict[str, dict[str, np.ndarray]], threshold: float
) -> pd.DataFrame:
    """The first row of each scored split: every column of scores.csv, in order, with its type."""
    heads = [
        score_rows(features, s, o, threshold, 0, min(1, len(features.splits[s])))
        for s, o in outputs.items()
    ]
    return pd.concat(heads, ignore_index=True)


def val_f1(val_scores: np.ndarray, features: Features) -> float | None:
    """Best F1 over thresholds of the val scores (``selected_val``), None without both kinds of val
    labels: what hyper-parameters given rather than selected reach on val."""
    val = features.splits["val"]
    if not val.has_labels or val.is_mislabel.all() or not val.is_mislabel.any():
        return None
    return float(best_f1(val_scores, val.is_mislabel)[0])


def dropped_metrics(features: Features) -> dict[str, int]:
    """``{split}/dropped`` and ``{split}/dropped_<reason>``: every pair of the source not scored."""
    out: dict[str, int] = {}
    for split, dropped in features.provenance.dropped.items():
        key = split.replace(" ", "_")
        out[f"{key}/dropped"] = len(dropped)
        out.update({f"{key}/dropped_{r.replace(' ', '_')}": n for r, n in dropped.counts().items()})
    return out


def run(cfg: RunConfig, launch_parts: Callable[[parts.PartPlan], bool] | None = None) -> RunResult:
    """Run one evaluation end to end and write its outputs atomically, ``done`` last.

    ``launch_parts`` (with ``--score_parts``): called with the plan once it is written, it runs the parts
    elsewhere (``python -m lemon.scale.parts``: Slurm, local workers) and says whether all are done; when not,
    the run stops with :class:`lemon.scale.parts.PartsPending` and writes nothing.
    """
    start = time.time()
    cfg.validate()
    check_names(cfg)  # unknown or mismatched names fail before any work
    k = resolve_k(cfg)
    scorer = SCORERS.get(cfg.scorer)(scorer_options(cfg, k))
    out = Path(cfg.output_dir).expanduser()
    # checked, locked, written into a staging folder and swapped in only when finished
    with rundir.claim(out, overwrite=cfg.overwrite) as stage:
        handler = _attach_log(stage.path, cfg.debug)
        try:
            log.info("run_lemon %s", " ".join(sys.argv[1:]))
            for note in stage.notes:
                log.info(note)
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                # torch on read-only memory-mapped embeddings: they are only ever read
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                warnings.showwarning = _log_warning
                result = _run(cfg, k, scorer, stage.path, start, out, launch_parts)
        finally:
            log.removeHandler(handler)
            handler.close()
        if handler.error is not None:  # log.txt is incomplete: the run is not finished
            raise handler.error
        stage.commit()
    return dataclasses.replace(result, out_dir=out)


def _run(
    cfg: RunConfig,
    k: int,
    scorer: Scorer,
    out: Path,
    start: float,
    shown: Path,
    launch_parts: Callable[[parts.PartPlan], bool] | None,
) -> RunResult:
    device = resolve_device(cfg.device)
    data = cfg.data_options()
    resolved = {"knn_k": k, "noise_level": cfg.resolved_noise_level, "prompt": data.prompt}
    args = {
        **cfg.to_dict(),
        "resolved": {**resolved, "device": device},
        "environment": environment(),
    }
    io.atomic_write_json(out / "args.json", args)
    timings: dict[str, float] = {}
    t = time.time()
    features = load_features(cfg, k, device)
    timings["load_features_s"] = time.time() - t
    prov = features.provenance
    args["data"] = {
        "source": prov.source,
        "embedder": prov.embedder,
        "embedder_id": prov.embedder_id,
        "cache_root": prov.cache_root,
        "cache_hits": prov.cache_hits,
        "cache_misses": prov.cache_misses,
        "dropped": prov.dropped_counts(),
        "seen_by_model": prov.seen_by_model,
    }
    io.atomic_write_json(out / "args.json", args)
    scorer.check(features)
    splits = scored_splits(cfg, features)
    sizes = {s: len(features.splits[s]) for s in splits}
    if cfg.score_parts > 1:  # refused before the selection, not after it
        parts.check_parts(cfg.score_parts, sizes, scorer)
    ctx = ScoringContext(features, knn=knn_options(cfg, device))
    log.info(
        "task=%s reference=%d %s",
        features.task,
        len(features.reference_index),
        {s: len(f) for s, f in features.splits.items()},
    )

    t = time.time()
    hparams = scorer.fit(ctx)
    timings["fit_s"] = time.time() - t
    if "selection_s" in hparams:
        timings["selection_s"] = hparams["selection_s"]
    t = time.time()
    n_rows = sum(sizes.values())
    keep_neighbours, parquet = stream.optional_outputs(
        cfg.save_neighbours, cfg.scores_parquet, n_rows
    )
    parts_info: dict[str, Any] = {}
    if cfg.score_parts > 1:
        folder = part_plan_folder(cfg, k, features, splits, device)
        with parts.plan_lock(folder):
            plan = parts.open_plan(folder, cfg.score_parts, sizes, hparams)
            if launch_parts is not None and not launch_parts(plan):
                raise parts.PartsPending(
                    f"Not all {plan.parts} parts are scored yet, so the run is not written; run "
                    "the command again once they are."
                )
            outputs, scored_here = parts.score_in_parts(plan, scorer, ctx, cfg.stream_block)
        parts_info = {"parts/n": plan.parts, "parts/scored_here": scored_here}
    else:
        outputs = stream.score_splits(
            scorer, ctx, splits, hparams, cfg.stream_block, keep_neighbours
        )
    timings["score_s"] = time.time() - t
    if "selection" in hparams and "selected_val" not in hparams:
        hparams = {**hparams, "selected_val": val_f1(outputs["val"]["score"], features)}
    t = time.time()
    scores = {s: outputs[s]["score"] for s in splits}
    rule = label_free_rule(scorer, ctx, scores, hparams, seed=cfg.seed)
    for note in rule.warnings:
        log.warning("label-free rule: %s", note)
    timings["label_free_s"] = time.time() - t

    val = features.splits["val"]
    thresholds = select_thresholds(outputs["val"]["score"], val.is_mislabel, rule.threshold)
    metrics: dict[str, Any] = {}
    for s in splits:
        metrics.update(
            evaluate_split(outputs[s]["score"], features.splits[s].is_mislabel, thresholds, s)
        )
    timings["total_s"] = time.time() - start
    metrics.update({f"time/{k}": v for k, v in timings.items()})
    metrics.update(dropped_metrics(features))
    metrics.update(rule.metrics())
    metrics.update(parts_info)
    metrics.update(stream.search_metrics(ctx))
    metrics.update(stream.measure_recall(ctx, splits, k, cfg.knn_recall_sample, cfg.seed))

    rule_name = flag_rule(thresholds)
    threshold = thresholds[rule_name]
    stream.write_scores(
        out,
        score_blocks(features, outputs, threshold, cfg.stream_block),
        score_columns(features, outputs, threshold),
        parquet,
    )
    io.atomic_write_csv(out / "dropped.csv", prov.dropped_frame())
    arrays = {
        f"{s}_{k}": features.reference_rows(v) if k.startswith("idx") else v
        for s, o in outputs.items()
        for k, v in o.items()
        if np.ndim(v) == 2
    }
    if arrays:  # neighbour ids index the reference set: keep its row -> train index map beside them
        io.atomic_save_npz(
            out / "neighbours.npz", {**arrays, "reference_index": features.reference_index}
        )
    hparams_out = {
        "scorer": cfg.scorer,
        "knn_k": k,
        "dist_type": cfg.dist_type,
        "ablation": cfg.ablation,
        **hparams,
        "thresholds": thresholds,
        "flag_rule": rule_name,
        "flag_rule_text": RULE_TEXT[rule_name],
        "label_free": rule.info(),
        **stream.knn_info(ctx),
    }
    io.atomic_write_json(out / "hparams.json", hparams_out)
    io.atomic_write_json(out / "metrics.json", metrics)
    if cfg.report:
        from lemon.report.build import write_report

        write_report(out, location=shown)
    log.info("done in %.1f s", time.time() - start)
    io.mark_done(out, time.time() - start)

    def all_scores() -> pd.DataFrame:
        frames = list(score_blocks(features, outputs, threshold, max(1, n_rows)))
        if not frames:
            return score_columns(features, outputs, threshold).iloc[:0]
        return pd.concat(frames, ignore_index=True)

    return RunResult(out, hparams_out, metrics, all_scores)


def flag_rule(thresholds: dict[str, float]) -> str:
    """The threshold that flags pairs (scores.csv's ``flagged``, the report, flagged.csv, the summary):
    the val-optimal one when the run has val labels, else the label-free rule (the original's KDE-valley
    ``heuristic`` only for runs that have neither)."""
    for name in ("optimal", "label_free", "heuristic"):
        if name in thresholds:
            return name
    raise LemonError(f"no flag threshold among {sorted(thresholds)}")


RULE_TEXT = {
    "optimal": "the threshold that maximised F1 on the labelled val split",
    "label_free": "the label-free rule: the estimated share of mislabelled pairs, most suspicious first",
    "heuristic": "the original's label-free KDE-valley threshold",
}


def format_summary(result: RunResult) -> str:
    """One screen: per split AUROC, AUPRC and F1 at each threshold, the flags, and where the files are."""
    m = result.metrics
    splits = [s for s in ("train", "val", "test") if f"{s}/n" in m]

    def fmt(v):
        return "   -  " if v is None else f"{v:6.3f}"

    lines = [f"{'split':<6} {'n':>7}  " + " ".join(f"{k:>13}" for k in SUMMARY_KEYS)]
    for s in splits:
        lines.append(
            f"{s:<6} {m[f'{s}/n']:>7}  "
            + " ".join(f"{fmt(m.get(f'{s}/{k}')):>13}" for k in SUMMARY_KEYS)
        )
    if not any(m.get(f"{s}/AUROC") is not None for s in splits):
        lines.append("(no ground truth: AUROC, AUPRC and F1 need labelled pairs)")
    lines.append(
        "F1_<rule>: F1 when flagging score >= the <rule> threshold: optimal = best val F1, "
        "prevalence = flags the val mislabel rate, heuristic = the original's KDE valley on val, "
        "label_free = flags the estimated noise rate (no labels used)."
    )
    h = result.hparams
    chosen = ", ".join(f"{n}={h[n]:.4g}" for n in HPARAM_NAMES if n in h)
    sel = h.get("selected_val")
    lines.append(
        f"scorer={h['scorer']} k={h['knn_k']} dist={h['dist_type']} ablation={h['ablation']} "
        f"selection={h.get('selection', '-')}" + (f" (val F1 {sel:.4f})" if sel is not None else "")
    )
    if chosen:
        lines.append(chosen)
    lf = h.get("label_free")
    if lf:
        sep = lf.get("separation_auroc")
        lines.append(
            f"estimated noise rate (no labels used): {lf['rate']:.1%} of the "
            + ("held-out" if lf.get("pool") == "held_out" else "scored")
            + f" pairs ({lf['method']}, {lf['n_mismatched']} mismatched pairs"
            + (f", separation {sep:.2f}" if sep is not None else "")
            + ")"
            + ("; see the warnings in log.txt" if lf.get("warnings") else "")
        )
    search = stream.knn_summary(h, m)
    if search:
        lines.append(search)
    rule = h.get("flag_rule")
    if rule:
        flagged = {s: m.get(f"{s}/n_flagged_{rule}") for s in splits}
        counts = ", ".join(f"{s} {n} of {m[f'{s}/n']}" for s, n in flagged.items() if n is not None)
        lines.append(f"flagged ({RULE_TEXT.get(rule, rule)}): {counts}")
    dropped = {key: n for key, n in m.items() if key.endswith("/dropped") and n}
    if dropped:
        lines.append(
            "not scored: "
            + ", ".join(f"{key.split('/')[0]} {n}" for key, n in dropped.items())
            + " (each with its reason in dropped.csv)"
        )
    out = result.out_dir
    report = out / "report.html"
    lines.append(
        f"outputs: {out}  (scores.csv: one row per pair; metrics.json; hparams.json"
        + (f"; report: {report}" if report.is_file() else "; add --report for report.html")
        + ")"
    )
    return "\n".join(lines)
