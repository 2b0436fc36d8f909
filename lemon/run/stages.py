"""The stages of a run after loading, each a function of explicit inputs: build the scorer, score every
split (whole, streamed in blocks, or in parts), flag (the label-free rule and the thresholds chosen on
val), and evaluate. :func:`lemon.run.pipeline.run` calls them in order."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lemon.core.paths import cache_root
from lemon.data.features import Features
from lemon.method.evaluate import best_f1, evaluate_split, select_thresholds
from lemon.method.labelfree import LabelFreeRule, is_uncertain_note, label_free_rule
from lemon.method.zeroshot import zero_shot_outputs
from lemon.neighbors import KnnOptions
from lemon.run.config import RunConfig, execution_fields
from lemon.scale import parts, stream
from lemon.scorers import SCORERS
from lemon.scorers.base import Scorer, ScorerOptions, ScoringContext
from lemon.scorers.flags import options_of

log = logging.getLogger("lemon")
#: split -> the scorer's per-row outputs (``score`` and its terms; 2-D arrays are neighbour ids/sims)
Outputs = dict[str, dict[str, np.ndarray]]


def scorer_options(cfg: RunConfig, k: int) -> ScorerOptions:
    """What the scorer reads of the run: the options every scorer may read, LEMoN's, and its own flags,
    typed by its ``Options`` (:mod:`lemon.scorers.flags`)."""
    return options_of(
        cfg.scorer,
        cfg.scorer_flags,
        k=k,
        dist_type=cfg.dist_type,
        temperature=cfg.temperature,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        precision=cfg.precision,
        cache_dir=str(cache_root(cfg.cache_dir)),
        ablation=cfg.ablation,
        normalize_d1=cfg.normalize_d1,
        use_discrete_for_text=cfg.use_discrete_for_text,
        legacy_discrete_weighting=cfg.legacy_discrete_weighting,
        fixed=cfg.fixed_hparams,
        # reviewed decisions are labels even where the data has none (--real_dataset)
        select=not cfg.skip_hparam_optim and (not cfg.real_dataset or cfg.reviewed is not None),
        search_budget=cfg.search_budget,
    )


def build_scorer(cfg: RunConfig, k: int) -> Scorer:
    """The run's scorer (``--scorer``) with its options."""
    return SCORERS.get(cfg.scorer)(scorer_options(cfg, k))


def knn_options(cfg: RunConfig, device: str) -> KnnOptions:
    """How the run searches neighbours."""
    return KnnOptions(
        backend=cfg.knn_backend,
        device=device,
        nlist=cfg.knn_nlist,
        nprobe=cfg.knn_nprobe,
        seed=cfg.seed,
    )


def scored_splits(cfg: RunConfig, features: Features) -> list[str]:
    """The splits a run scores, in order (train left out with --skip_train)."""
    return [
        s
        for s in ("train", "val", "test")
        if s in features.splits and not (s == "train" and cfg.skip_train)
    ]


def prepare_scoring(
    cfg: RunConfig, scorer: Scorer, features: Features, device: str
) -> tuple[ScoringContext, list[str]]:
    """The scoring context over the run's features and the splits it scores; a scorer that cannot score
    these features, or parts it cannot be split into, are refused here, before any selection."""
    scorer.check(features)
    splits = scored_splits(cfg, features)
    if cfg.score_parts > 1:
        parts.check_parts(cfg.score_parts, {s: len(features.splits[s]) for s in splits}, scorer)
    log.info(
        "task=%s reference=%d %s",
        features.task,
        len(features.reference_index),
        {s: len(f) for s, f in features.splits.items()},
    )
    return ScoringContext(features, knn=knn_options(cfg, device)), splits


@dataclass
class Scored:
    """What the score stage produced: per-split outputs, the hyper-parameters they were scored with, and
    what the run writes beside scores.csv."""

    outputs: Outputs
    hparams: dict[str, Any]
    keep_neighbours: bool
    parquet: bool
    parts_info: dict[str, Any] = field(default_factory=dict)

    def scores(self) -> dict[str, np.ndarray]:
        return {s: o["score"] for s, o in self.outputs.items()}


def score(
    cfg: RunConfig,
    k: int,
    scorer: Scorer,
    ctx: ScoringContext,
    splits: list[str],
    hparams: dict[str, Any],
    device: str,
    launch_parts: Callable[[parts.PartPlan], bool] | None,
) -> Scored:
    """Score every split with ``hparams``: whole or streamed in blocks, or in parts (``--score_parts``)
    that ``launch_parts`` may run elsewhere; then ``selected_val`` from the val scores."""
    n_rows = sum(len(ctx.features.splits[s]) for s in splits)
    keep, parquet = stream.optional_outputs(cfg.save_neighbours, cfg.scores_parquet, n_rows)
    parts_info: dict[str, Any] = {}
    if cfg.score_parts > 1:
        outputs, parts_info = _score_in_parts(
            cfg, k, scorer, ctx, splits, hparams, device, launch_parts
        )
    else:
        outputs = stream.score_splits(scorer, ctx, splits, hparams, cfg.stream_block, keep)
    if "selection" in hparams and "selected_val" not in hparams:
        hparams = {**hparams, "selected_val": val_f1(outputs["val"]["score"], ctx.features)}
    return Scored(outputs, hparams, keep, parquet, parts_info)


def _score_in_parts(
    cfg: RunConfig,
    k: int,
    scorer: Scorer,
    ctx: ScoringContext,
    splits: list[str],
    hparams: dict[str, Any],
    device: str,
    launch_parts: Callable[[parts.PartPlan], bool] | None,
) -> tuple[Outputs, dict[str, Any]]:
    """The parts of the run's plan, scored here or by ``launch_parts``, assembled; one run holds the plan."""
    sizes = {s: len(ctx.features.splits[s]) for s in splits}
    folder = part_plan_folder(cfg, k, ctx.features, splits, device)
    with parts.plan_lock(folder):
        plan = parts.open_plan(folder, cfg.score_parts, sizes, hparams)
        if launch_parts is not None and not launch_parts(plan):
            raise parts.PartsPending(
                f"Not all {plan.parts} parts are scored yet, so the run is not written; run "
                "the command again once they are."
            )
        outputs, scored_here = parts.score_in_parts(plan, scorer, ctx, cfg.stream_block)
    return outputs, {"parts/n": plan.parts, "parts/scored_here": scored_here}


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


def val_f1(val_scores: np.ndarray, features: Features) -> float | None:
    """Best F1 over thresholds of the val scores (``selected_val``), None without both kinds of val
    labels: what hyper-parameters given rather than selected reach on val."""
    y = features.splits["val"].is_mislabel
    if y is None or y.all() or not y.any():
        return None
    return float(best_f1(val_scores, y)[0])


@dataclass
class Flags:
    """The flag stage: the label-free rule, the thresholds chosen on val, and the one that flags."""

    rule: LabelFreeRule
    thresholds: dict[str, float]
    flag_rule: str

    @property
    def threshold(self) -> float:
        return self.thresholds[self.flag_rule]


def flag(scorer: Scorer, ctx: ScoringContext, scored: Scored, seed: int) -> Flags:
    """Estimate the noise rate without labels, choose the thresholds on val, and pick the flag rule."""
    rule = label_free_rule(scorer, ctx, scored.scores(), scored.hparams, seed=seed)
    if rule.zero_shot_temperature is not None:  # scores.csv's zero_shot_label / zero_shot_prob
        for split, out in scored.outputs.items():
            out.update(zero_shot_outputs(ctx.features, split, rule.zero_shot_temperature))
    # a model known to have trained on the reference pairs was named at embedding: the switch to the
    # held-out estimate it causes is expected, not a second warning
    known = any(ctx.features.provenance.seen_by_model.values())
    for note in rule.warnings:
        expected = known and rule.pool == "held_out" and "held-out estimate is used" in note
        expected = expected or is_uncertain_note(note)  # the summary prints this one itself
        if expected:
            rule.expected_warnings.append(note)
        (log.info if expected else log.warning)("label-free rule: %s", note)
    val = ctx.features.splits["val"]
    thresholds = select_thresholds(scored.outputs["val"]["score"], val.is_mislabel, rule.threshold)
    if ctx.reviewed is not None and ctx.reviewed.usable:
        thresholds["reviewed"] = ctx.reviewed.f1_threshold(scored.scores())[1]
    return Flags(rule, thresholds, flag_rule(thresholds))


def flag_rule(thresholds: dict[str, float]) -> str:
    """The threshold that flags pairs (scores.csv's ``flagged``, the report, flagged.csv, the summary):
    the one chosen on reviewed decisions (--reviewed), else the val-optimal one when the run has val
    labels, else the label-free rule (the original's KDE-valley ``heuristic`` only for runs that have
    none of these)."""
    from lemon.core.errors import LemonError

    for name in ("reviewed", "optimal", "label_free", "heuristic"):
        if name in thresholds:
            return name
    raise LemonError(f"no flag threshold among {sorted(thresholds)}")


def evaluate(
    cfg: RunConfig, k: int, ctx: ScoringContext, scored: Scored, flags: Flags
) -> dict[str, Any]:
    """metrics.json less the timings: per split AUROC, AUPRC and F1 at every threshold, the dropped rows,
    the label-free rule, the parts, the search and its measured recall."""
    from lemon.run.outputs import dropped_metrics

    metrics: dict[str, Any] = {}
    for s, out in scored.outputs.items():
        metrics.update(
            evaluate_split(out["score"], ctx.features.splits[s].is_mislabel, flags.thresholds, s)
        )
    metrics.update(dropped_metrics(ctx.features))
    metrics.update(flags.rule.metrics())
    audit = ctx.reviewed.noise_rate() if ctx.reviewed is not None else None
    if audit is not None:  # a person's audit replaces the label-free estimate
        for key in (
            "estimated_noise_rate",
            "estimated_noise_rate_low",
            "estimated_noise_rate_high",
        ):
            if key in metrics:
                metrics[f"label_free/{key}"] = metrics[key]
        metrics.update(audit)
    metrics.update(scored.parts_info)
    metrics.update(stream.search_metrics(ctx))
    splits = list(scored.outputs)
    metrics.update(stream.measure_recall(ctx, splits, k, cfg.knn_recall_sample, cfg.seed))
    return metrics


def score_one_part(cfg: RunConfig, part: int) -> parts.PartPlan:
    """A part job of ``python -m lemon.scale.parts``: score part ``part`` into the plan (written beforehand
    by the :func:`lemon.run.pipeline.run` that launched the job, with the same flags); returns the plan."""
    from lemon.core.device import resolve_device
    from lemon.run.load import load_features, resolve_k

    cfg.validate()
    k = resolve_k(cfg)
    scorer = build_scorer(cfg, k)
    device = resolve_device(cfg.device)
    features = load_features(cfg, k, device)
    splits = scored_splits(cfg, features)
    plan = parts.read_plan(part_plan_folder(cfg, k, features, splits, device))
    ctx = ScoringContext(features, knn=knn_options(cfg, device))
    parts.score_part(plan, part, scorer, ctx, cfg.stream_block)
    return plan
