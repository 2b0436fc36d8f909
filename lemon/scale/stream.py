"""The post-embedding stage at scale: scored block by block, in memory O(block + N k).

A split larger than one block is scored in blocks of query rows (``--stream_block``): each block's rows are
read from the (memory-mapped) embeddings, searched against the reference set with the searchers built once
for the run, turned into neighbour terms and scores, and released; only per-row results (O(N)) and, when
neighbours.npz is written, the neighbour ids (O(N k)) are kept. Scorers whose scores depend only on the
sample and the reference set (``Scorer.streamable``) are streamed; the others see whole splits.

Approximate searches are checked every run: on a seeded sample of the scored queries their neighbours are
compared with exact float32 search (``search/knn_recall_at_k`` in metrics.json). Outputs are written in row blocks
(scores.csv, and scores.parquet for large runs when pyarrow is installed), atomically.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lemon.core.errors import LemonError, MissingDependencyError
from lemon.core.io import atomic_open
from lemon.core.npy import blocks, release, take_rows
from lemon.data.features import normalize_rows

if TYPE_CHECKING:
    import pandas as pd

    from lemon.scorers.base import Scorer, ScoringContext

log = logging.getLogger(__name__)

#: rows per streamed block of a split (and per written block of scores.csv)
BLOCK_ROWS = 65536
#: runs scoring more rows than this are "large": neighbours.npz (N x 2k ids) is left out and
#: scores.parquet written beside scores.csv, unless asked otherwise (--save_neighbours, --scores_parquet)
LARGE_RUN_ROWS = 200_000
SWITCHES = ("auto", "always", "never")


def optional_outputs(save_neighbours: str, scores_parquet: str, n_rows: int) -> tuple[bool, bool]:
    """(write neighbours.npz, write scores.parquet) for a run scoring ``n_rows`` rows.

    Each switch is 'always', 'never' or 'auto': neighbours.npz (N x 2k ids) for runs of at most
    LARGE_RUN_ROWS rows, scores.parquet for larger runs when pyarrow is installed. 'always' for parquet
    without pyarrow is an error.
    """
    for name, value in (("save_neighbours", save_neighbours), ("scores_parquet", scores_parquet)):
        if value not in SWITCHES:
            raise LemonError(f"Unknown {name} '{value}'. Available: {', '.join(SWITCHES)}.")
    large = n_rows > LARGE_RUN_ROWS
    neighbours = save_neighbours == "always" or (save_neighbours == "auto" and not large)
    if scores_parquet == "always":
        try:
            import pyarrow  # noqa: F401
        except ImportError as err:
            raise MissingDependencyError(
                "--scores_parquet always needs pyarrow; install 'lemon[parquet]' or pass "
                "--scores_parquet auto."
            ) from err
        return neighbours, True
    return neighbours, scores_parquet == "auto" and large and importlib.util.find_spec(
        "pyarrow"
    ) is not None


def score_splits(
    scorer: Scorer,
    ctx: ScoringContext,
    splits: Sequence[str],
    hparams: dict[str, Any],
    block_rows: int = BLOCK_ROWS,
    keep_neighbours: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """``{split: scorer.score(...)}`` for ``splits``, each split larger than ``block_rows`` scored block by
    block when the scorer allows it (same values as scoring the split whole).

    ``keep_neighbours``: keep the (n, k) arrays of the outputs (neighbour ids) for neighbours.npz; without
    them the memory left after scoring is O(N).
    """
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for name in splits:
        n = len(ctx.split(name))
        if not scorer.streamable or n <= block_rows:
            outputs[name] = _keep(scorer.score(ctx, name, hparams), keep_neighbours)
            continue
        log.info("scoring %s in %d blocks of %d rows", name, -(-n // block_rows), block_rows)
        outputs[name] = score_range(scorer, ctx, name, 0, n, hparams, block_rows, keep_neighbours)
    return outputs


def score_range(
    scorer: Scorer,
    ctx: ScoringContext,
    name: str,
    start: int,
    stop: int,
    hparams: dict[str, Any],
    block_rows: int = BLOCK_ROWS,
    keep_neighbours: bool = True,
) -> dict[str, np.ndarray]:
    """The outputs of rows ``[start, stop)`` of split ``name`` (a streamable scorer), scored block by
    block; each block's pages of a memory-mapped split are handed back once it is scored."""
    split = ctx.split(name)
    pieces = []
    for a, b in blocks(stop - start, block_rows):
        a, b = start + a, start + b
        pieces.append(_keep(scorer.score(ctx.block(name, a, b), name, hparams), keep_neighbours))
        release(split.img, a, b)
        release(split.txt, a, b)
    return {key: np.concatenate([p[key] for p in pieces]) for key in pieces[0]}


def _keep(out: dict[str, np.ndarray], neighbours: bool) -> dict[str, np.ndarray]:
    """The outputs, without the (n, k) neighbour arrays unless asked; ids as int32 when they fit."""
    kept = {}
    for key, value in out.items():
        if np.ndim(value) == 2:
            if not neighbours:
                continue
            if np.issubdtype(np.asarray(value).dtype, np.integer) and value.max(initial=0) < 2**31:
                value = np.asarray(value, dtype=np.int32)
        kept[key] = value
    return kept


def measure_recall(
    ctx: ScoringContext, splits: Sequence[str], k: int, sample: int, seed: int = 0
) -> dict[str, float]:
    """recall@k of the run's searches against exact float32 search, on ``sample`` seeded query rows drawn
    from ``splits`` (their own reference rows excluded, as in the run).

    Returns ``search/knn_recall_at_k`` (mean over the spaces searched), ``search/knn_recall_at_k_img``
    / ``search/knn_recall_at_k_txt`` and ``search/knn_recall_sample`` (metrics.json keys are
    ``<group>/<name>``); nothing when the run searched exactly in float32
    (the reference itself), searched nothing, or ``sample`` is 0.
    """
    from lemon.neighbors import recall_at_k
    from lemon.neighbors.exact import TorchExact

    spaces = sorted(ctx.searchers)
    backend, _ = ctx.knn_choice()
    if not spaces or backend == "torch" or sample <= 0:
        return {}
    sizes = np.asarray([len(ctx.split(s)) for s in splits])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rng = np.random.default_rng([seed, 7])
    pick = np.sort(rng.choice(int(starts[-1]), min(sample, int(starts[-1])), replace=False))
    out: dict[str, float] = {}
    for space in spaces:
        queries, exclude = [], []
        for j, name in enumerate(splits):
            rows = pick[(pick >= starts[j]) & (pick < starts[j + 1])] - starts[j]
            if not len(rows):
                continue
            emb = take_rows(getattr(ctx.split(name), space), rows)
            queries.append(emb if emb.dtype == np.float32 else normalize_rows(emb, space))
            own = ctx.self_rows(name)
            exclude.append(np.full(len(rows), -1) if own is None else own[rows])
        q, ex = np.concatenate(queries), np.concatenate(exclude)
        found = ctx.searcher(space).search(q, k, ex)[1]
        truth = TorchExact(ctx.searcher(space).ref, ctx.device).search(q, k, ex)[1]
        out[f"search/knn_recall_at_k_{space}"] = recall_at_k(found, truth)
    out["search/knn_recall_at_k"] = float(
        np.mean([out[f"search/knn_recall_at_k_{s}"] for s in spaces])
    )
    out["search/knn_recall_sample"] = len(pick)
    log.info(
        "kNN recall@%d against exact search on %d sampled queries: %s",
        k,
        len(pick),
        ", ".join(f"{s} {out[f'search/knn_recall_at_k_{s}']:.4f}" for s in spaces),
    )
    return out


def write_scores(
    out_dir: Path, frames: Iterable[pd.DataFrame], columns: pd.DataFrame, parquet: bool = False
) -> list[str]:
    """scores.csv (and scores.parquet with ``parquet``) from ``frames`` of rows, each written as it comes
    (no frame of all rows is held), atomically.

    ``columns``: a few rows holding every column, in order (one row of each split): it fixes the files'
    columns (a frame lacking one leaves it empty) and the parquet schema (a column all None in one split
    and integer in another is integer with nulls). The CSV is byte-identical to
    ``pd.concat(frames).to_csv(index=False)``. Returns the file names written.
    """
    names = ["scores.csv"] + (["scores.parquet"] if parquet else [])
    order = list(columns.columns)
    with contextlib.ExitStack() as files:
        csv = files.enter_context(atomic_open(Path(out_dir) / "scores.csv"))
        writer = None
        if parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.Schema.from_pandas(columns, preserve_index=False)
            target = files.enter_context(atomic_open(Path(out_dir) / "scores.parquet", "wb"))
            writer = files.enter_context(pq.ParquetWriter(target, schema))
        header = True
        for frame in frames:
            frame = frame.reindex(columns=order)
            frame.to_csv(csv, header=header, index=False, lineterminator="\n")
            header = False
            if writer is not None:
                writer.write_table(pa.Table.from_pandas(frame, schema, preserve_index=False))
        if header:  # no rows: the header alone
            columns.iloc[:0].to_csv(csv, index=False, lineterminator="\n")
    return names


def search_metrics(ctx: ScoringContext) -> dict[str, float]:
    """``time/knn_s``: seconds spent searching neighbours (inside fit and score)."""
    return {"time/knn_s": ctx.search_seconds} if ctx.searchers else {}


def knn_info(ctx: ScoringContext) -> dict[str, str]:
    """For hparams.json: the search backend used, its settings and why it was chosen ({} without kNN)."""
    if not ctx.searchers:
        return {}
    backend, reason = ctx.knn_choice()
    described = {s.describe() for s in ctx.searchers.values()}
    return {
        "knn_backend": backend,
        "knn_search": "; ".join(sorted(described)),
        "knn_reason": reason,
    }


def knn_summary(hparams: dict[str, Any], metrics: dict[str, Any]) -> str | None:
    """One line for the run summary: which search ran and why, and its measured recall."""
    search = hparams.get("knn_search")
    if not search:
        return None
    line = f"kNN: {search} ({hparams.get('knn_reason', '')})"
    if metrics.get("search/knn_recall_at_k") is not None:
        spaces = ", ".join(
            f"{s} {metrics[f'search/knn_recall_at_k_{s}']:.3f}"
            for s in ("img", "txt")
            if f"search/knn_recall_at_k_{s}" in metrics
        )
        line += f"; recall@k vs exact on {metrics['search/knn_recall_sample']} queries: {spaces}"
    return line
