"""Scoring in parts: each scored split cut into P row ranges, every part searched and scored against the
one shared (capped) reference set, the parts assembled by the run.

One process takes about 9 minutes per million pairs on 2 cores, so hundreds of millions of pairs are scored
as parts on many nodes (``python -m lemon.scale.parts``: a Slurm array or local workers) or one part after
another in the run itself (``run_lemon --score_parts P``, resumable). Part ``p`` holds rows
``[n p // P, n (p + 1) // P)`` of every scored split, so the assembled outputs equal scoring each split
whole (the scorers that may be split are those whose scores depend only on the pair and the reference
set, ``Scorer.streamable``).

The parts live in the cache, in a folder named by a digest of what decides the scores (the run's identity
flags, k, the search backend, the embedder and the split sizes). Its ``plan.json`` holds the
hyper-parameters the parts are scored with, written once by the run that fits them; each part writes its
per-row outputs (the score and its 1-D terms) as one ``.npz`` per split, then ``done``. A rerun scores only
the parts that are not done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lemon.core import io
from lemon.core.errors import LemonError

if TYPE_CHECKING:
    from lemon.scorers.base import Scorer, ScoringContext

log = logging.getLogger(__name__)

PLAN = "plan.json"
#: held by the one run that opens the plan (lemon.core.lock), removed when it lets go
LOCK = ".lock"


class PartsPending(LemonError):
    """The parts of a run are not all scored (still running, failed, or only listed by a dry run)."""


@dataclass(frozen=True)
class PartPlan:
    """A run's scoring cut into ``parts`` parts: where they live and which rows each holds.

    folder : the plan's folder (plan.json, and parts/<p>/ per part)
    sizes : rows of each scored split, in the order they are scored
    hparams : the hyper-parameters every part is scored with
    """

    folder: Path
    parts: int
    sizes: Mapping[str, int]
    hparams: Mapping[str, Any]

    def rows(self, split: str, part: int) -> tuple[int, int]:
        """(start, stop): the rows of ``split`` that part ``part`` scores."""
        n = self.sizes[split]
        return n * part // self.parts, n * (part + 1) // self.parts

    def part_folder(self, part: int) -> Path:
        return self.folder / "parts" / f"{part:05d}"

    def done(self) -> list[int]:
        """The parts whose outputs are complete."""
        return [p for p in range(self.parts) if io.is_done(self.part_folder(p))]


def plan_folder(cache_root: Path, identity: Mapping[str, Any], parts: int) -> Path:
    """The folder of this cut of a run (``identity``: what decides its scores, JSON-able)."""
    digest = hashlib.sha256(
        json.dumps({**identity, "parts": parts}, sort_keys=True, default=str).encode()
    )
    return Path(cache_root) / "score_parts" / digest.hexdigest()[:20]


def check_parts(parts: int, sizes: Mapping[str, int], scorer: Scorer) -> None:
    """Refuse a cut that cannot be made: a scorer that needs whole splits, or more parts than rows."""
    if not scorer.streamable:
        from lemon.scorers import SCORERS

        able = [n for n in SCORERS.names() if SCORERS.get(n).streamable]
        raise LemonError(
            f"Scorer '{scorer.name}' scores a split as a whole, so it cannot be scored in parts; "
            f"drop --score_parts or use one of: {', '.join(able)}."
        )
    for split, n in sizes.items():
        if parts > n:
            raise LemonError(
                f"--score_parts {parts} is more than the {n} rows of split '{split}'; pass at most {n}."
            )


#: what a selection reached and how it got there, not what the parts are scored with
NOT_SCORING = ("selected_val", "selection_evaluations")


def _comparable(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The hyper-parameters the parts are scored with: without timings (the same fit takes other
    seconds each time) and without the selection's own results."""
    kept = {k: v for k, v in hparams.items() if not k.endswith("_s") and k not in NOT_SCORING}
    return json.loads(json.dumps(kept, default=str))


@contextlib.contextmanager
def plan_lock(folder: Path) -> Iterator[None]:
    """Hold the plan in ``folder`` for one run, from opening it to reading its parts. Two runs of the
    same data and flags (other output folders) share one plan: the second would score the parts the first
    is scoring, or discard them while the first reads them."""
    from lemon.core.lock import RunLock

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunLock(
        folder / LOCK,
        folder,
        what=f"The scoring plan {folder} (shared by runs of the same data and flags)",
        fix="run this command again once it has finished (it scores the same parts)",
    ).acquire()
    try:
        yield
    finally:
        lock.release()


def open_plan(
    folder: Path, parts: int, sizes: Mapping[str, int], hparams: Mapping[str, Any]
) -> PartPlan:
    """The plan in ``folder``, written when absent. Parts scored with other hyper-parameters than
    ``hparams`` (a selection that came out differently) are discarded, with a warning."""
    plan = PartPlan(Path(folder), parts, dict(sizes), _comparable(hparams))
    path = plan.folder / PLAN
    if path.is_file():
        stored = io.read_json(path)
        same = _comparable(stored.get("hparams", {})) == plan.hparams
        if same and stored.get("sizes") == plan.sizes:
            return plan
        log.warning(
            "parts in %s were scored with other hyper-parameters or split sizes; scoring them again",
            plan.folder,
        )
        shutil.rmtree(plan.folder / "parts", ignore_errors=True)
    plan.folder.mkdir(parents=True, exist_ok=True)
    io.atomic_write_json(path, {"parts": parts, "sizes": plan.sizes, "hparams": plan.hparams})
    return plan


def read_plan(folder: Path) -> PartPlan:
    """The plan a part job scores into (written by the command that launched it)."""
    path = Path(folder) / PLAN
    if not path.is_file():
        raise LemonError(
            f"No plan in {folder}: the part jobs are launched by python -m lemon.scale.parts (or "
            "run_lemon --score_parts), which writes it; run that command."
        )
    stored = io.read_json(path)
    return PartPlan(Path(folder), int(stored["parts"]), stored["sizes"], stored["hparams"])


def score_part(
    plan: PartPlan, part: int, scorer: Scorer, ctx: ScoringContext, block_rows: int
) -> None:
    """Score part ``part`` of every split into its folder (``<split>.npz``, then ``done``)."""
    from lemon.scale.stream import score_range

    if not 0 <= part < plan.parts:
        raise LemonError(f"Part {part} does not exist: the plan has parts 0 to {plan.parts - 1}.")
    start_time = time.time()
    folder = plan.part_folder(part)  # the job's folder (its job_id is there): files are replaced
    folder.mkdir(parents=True, exist_ok=True)
    for split in plan.sizes:
        start, stop = plan.rows(split, part)
        out = score_range(scorer, ctx, split, start, stop, dict(plan.hparams), block_rows, False)
        io.atomic_save_npz(folder / f"{split}.npz", out)
    io.mark_done(folder, time.time() - start_time)


def score_in_parts(
    plan: PartPlan, scorer: Scorer, ctx: ScoringContext, block_rows: int
) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """(the assembled outputs, how many parts were scored here): the parts not done are scored in this
    process, one after another, the others read."""
    done = set(plan.done())
    todo = [p for p in range(plan.parts) if p not in done]
    log.info(
        "scoring in %d parts (%s): %d done by earlier runs or jobs, %d scored here",
        plan.parts,
        plan.folder,
        len(done),
        len(todo),
    )
    for part in todo:
        score_part(plan, part, scorer, ctx, block_rows)
    return assemble(plan, list(plan.sizes)), len(todo)


def assemble(plan: PartPlan, splits: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {output: (n,) array}}`` from the parts, in row order; every part must be done."""
    missing = sorted(set(range(plan.parts)) - set(plan.done()))
    if missing:
        raise LemonError(
            f"{len(missing)} of {plan.parts} parts are not scored yet (first: {missing[0]}); run the "
            "command again to score them."
        )
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for split in splits:
        pieces = []
        for part in range(plan.parts):
            path = plan.part_folder(part) / f"{split}.npz"
            with np.load(path) as stored:
                piece = {key: stored[key] for key in stored.files}
            start, stop = plan.rows(split, part)
            if any(len(v) != stop - start for v in piece.values()):
                raise LemonError(
                    f"{path} does not hold the {stop - start} rows of part {part}; delete "
                    f"{plan.part_folder(part)} and run the command again."
                )
            pieces.append(piece)
        outputs[split] = {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}
    return outputs
