"""Downstream training on filtered data: does filtering with a scorer make a better model?

From a finished run_lemon run (its ``scores.csv``) and a filter (drop the top p%, or the pairs the run
flagged, or keep the N cleanest; or for comparison drop p% at random, or nothing), train on the kept train
pairs with their *observed* (noisy) labels or captions, and evaluate on the clean test split:

- classification: a logistic-regression head on the run's image embeddings; test accuracy on the clean
  labels;
- captioning: a CLIP trained from scratch on the kept pairs (:mod:`lemon.train`, as the paper's CC3M study);
  zero-shot retrieval recall@1/5/10 (image -> text and text -> image) on the clean test captions.

The data is rebuilt from the run's own arguments (the embeddings come from the cache), so the kept pairs
are exactly the ones the run scored. Writes ``args.json`` (this config plus the scoring run's arguments),
``kept.csv``, ``metrics.json`` and, last, ``done``. ``python -m lemon.downstream --help`` lists the flags.
"""

from __future__ import annotations

from lemon.downstream.cli import check, main
from lemon.downstream.config import FILTERS, DownstreamConfig
from lemon.downstream.run import run_downstream

__all__ = ["FILTERS", "DownstreamConfig", "check", "main", "run_downstream"]
