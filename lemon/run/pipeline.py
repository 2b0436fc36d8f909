"""The one pipeline: every method (LEMoN and each baseline) goes through :func:`run`; only the scorer
differs. This is the only place a :class:`~lemon.run.config.RunConfig` is unpacked into the stages:

    claim the output folder -> record the arguments -> load (data, noise, embeddings: cached)
    -> fit (select on val) -> score every split -> flag (label-free rule, thresholds on val)
    -> evaluate -> write (scores, hparams, metrics, report) -> done -> swap the folder in
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lemon.core import io
from lemon.core.device import resolve_device
from lemon.core.errors import LemonError
from lemon.run import folder, outputs, stages
from lemon.run.config import RunConfig, check_names
from lemon.run.load import load_features, resolve_k
from lemon.run.log import run_log
from lemon.run.reviewed import load_reviewed
from lemon.scale import parts
from lemon.scorers.base import Scorer

log = logging.getLogger("lemon")


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


def run(cfg: RunConfig, launch_parts: Callable[[parts.PartPlan], bool] | None = None) -> RunResult:
    """Run one evaluation end to end and write its outputs atomically, ``done`` last.

    ``launch_parts`` (with ``--score_parts``): called with the plan once it is written, it runs the parts
    elsewhere (``python -m lemon.scale.parts``: Slurm, local workers) and says whether all are done; when
    not, the run stops with :class:`lemon.scale.parts.PartsPending` and writes nothing.
    """
    start = time.time()
    cfg.validate()
    if cfg.detector:
        raise LemonError(
            "--detector runs through python -m run_lemon (lemon.review.detector_run), not this "
            "pipeline: it scores against a finished run and has no parts or selection of its own."
        )
    check_names(cfg)  # unknown or mismatched names fail before any work
    k = resolve_k(cfg)
    scorer = stages.build_scorer(cfg, k)
    out = Path(cfg.output_dir).expanduser()
    # checked, locked, written into a staging folder and swapped in only when finished
    with folder.claim(out, overwrite=cfg.overwrite) as stage:
        with run_log(stage.path, cfg.debug):
            log.info("run_lemon %s", " ".join(sys.argv[1:]))
            for note in stage.notes:
                log.info(note)
            result = _run(cfg, k, scorer, stage.path, start, out, launch_parts)
        stage.commit()
    return dataclasses.replace(result, out_dir=out)


class _Clock(dict[str, float]):
    """Seconds per named stage (``time/<name>`` in metrics.json)."""

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.time()
        yield
        self[name] = time.time() - t


def _run(
    cfg: RunConfig,
    k: int,
    scorer: Scorer,
    out: Path,
    start: float,
    shown: Path,
    launch_parts: Callable[[parts.PartPlan], bool] | None,
) -> RunResult:
    """The stages, in order, writing into the staging folder ``out`` (``shown``: where it will be)."""
    device = resolve_device(cfg.device)
    clock = _Clock()
    args = outputs.write_args(cfg, k, device, out)
    with clock("load_features_s"):
        features = load_features(cfg, k, device)
    outputs.add_data_provenance(args, features, out)
    ctx, splits = stages.prepare_scoring(cfg, scorer, features, device)
    if cfg.reviewed:
        ctx.reviewed = load_reviewed(cfg.reviewed, features, splits)
    with clock("fit_s"):
        hparams = scorer.fit(ctx)
    if "selection_s" in hparams:
        clock["selection_s"] = hparams["selection_s"]
    with clock("score_s"):
        scored = stages.score(cfg, k, scorer, ctx, splits, hparams, device, launch_parts)
    with clock("label_free_s"):
        flags = stages.flag(scorer, ctx, scored, cfg.seed)
    metrics = stages.evaluate(cfg, k, ctx, scored, flags)
    clock["total_s"] = time.time() - start
    metrics = {**metrics, **{f"time/{name}": s for name, s in clock.items()}}
    record = outputs.hparams_record(cfg, k, ctx, scored, flags)
    outputs.write_results(out, features, scored, flags.threshold, record, metrics, cfg.stream_block)
    if cfg.report:
        from lemon.report import write_report

        write_report(out, location=shown)
    log.info("done in %.1f s", time.time() - start)
    io.mark_done(out, time.time() - start)
    build = functools.partial(outputs.all_scores, features, scored.outputs, flags.threshold)
    return RunResult(out, record, metrics, build)
