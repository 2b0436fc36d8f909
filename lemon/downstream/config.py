"""DownstreamConfig: what one downstream run depends on, and its flags (``python -m lemon.downstream``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lemon.core.errors import LemonError
from lemon.core.flags import flag

#: the sweep's script name of downstream runs (``python -m lemon.downstream``), recorded in their args.json
SCRIPT = "lemon.downstream"
#: how the train split is filtered by a scoring run's scores (higher score = more likely mislabelled)
FILTERS = ("none", "random", "drop_top", "flagged", "keep_n")
PRECISIONS = ("auto", "fp32", "bf16")
GROUPS = {
    "filter": "filter (which train pairs to keep)",
    "training": "training (the downstream model)",
    "output": "output",
    "compute": "compute",
}


@dataclass(frozen=True)
class DownstreamConfig:
    """Everything a downstream run depends on (``python -m lemon.downstream --help``)."""

    scores: str = flag(
        "",
        "A finished run_lemon folder (or its scores.csv) whose train scores filter the data.",
        "filter",
    )
    filter: str = flag(
        "drop_top",
        "none: train on every pair; random: drop --fraction at random; drop_top: drop the --fraction "
        "highest-scored; flagged: drop what the run flagged (its val-chosen threshold); keep_n: keep the "
        "--keep_n lowest-scored.",
        "filter",
        FILTERS,
    )
    fraction: float = flag(0.4, "random / drop_top: fraction of train pairs to drop.", "filter")
    keep_n: int | None = flag(None, "keep_n: how many lowest-scored train pairs to keep.", "filter")
    train_seed: int = flag(0, "Seed of the downstream model and of --filter random.", "training")
    classifier_c: float = flag(
        10.0,
        "Classification: inverse L2 strength of the logistic-regression head on the image embeddings.",
        "training",
    )
    train_model: str = flag(
        "lemon-demo",
        "Captioning: the CLIP trained from scratch (lemon-tiny, lemon-demo, an open_clip "
        "architecture such as ViT-B-32, or a model-config .json).",
        "training",
    )
    train_epochs: int = flag(12, "Captioning: training epochs.", "training")
    train_batch_size: int = flag(100, "Captioning: pairs per contrastive batch.", "training")
    train_lr: float = flag(2e-3, "Captioning: peak AdamW learning rate.", "training")
    output_dir: str = flag(
        "", "Folder receiving args.json, metrics.json, kept.csv (required).", "output"
    )
    overwrite: bool = flag(False, "Replace a finished downstream run in --output_dir.", "output")
    device: str = flag("auto", "'auto' (CUDA when present), 'cpu', 'cuda', ...", "compute")
    precision: str = flag(
        "auto", "Training precision: auto (bf16 on CUDA), fp32 or bf16.", "compute", PRECISIONS
    )
    num_workers: int = flag(2, "DataLoader workers decoding images.", "compute")

    def validate(self) -> DownstreamConfig:
        """Cross-field rules; raise LemonError with a fix."""
        if not self.output_dir:
            raise LemonError("--output_dir is required (the folder that receives the results).")
        if not self.scores:
            raise LemonError("--scores is required: a finished run_lemon folder or its scores.csv.")
        if self.filter not in FILTERS:
            raise LemonError(f"Unknown filter '{self.filter}'. Available: {', '.join(FILTERS)}.")
        if self.filter in ("random", "drop_top") and not 0 <= self.fraction < 1:
            raise LemonError(f"--fraction must be in [0, 1), got {self.fraction}.")
        if (self.filter == "keep_n") != (self.keep_n is not None):
            raise LemonError("--keep_n goes with --filter keep_n (and --filter keep_n needs it).")
        if self.keep_n is not None and self.keep_n < 1:
            raise LemonError(f"--keep_n must be >= 1, got {self.keep_n}.")
        if self.train_epochs < 1 or self.train_batch_size < 2 or self.train_lr <= 0:
            raise LemonError(
                "need train_epochs >= 1, train_batch_size >= 2 and train_lr > 0, got "
                f"{self.train_epochs}, {self.train_batch_size}, {self.train_lr}."
            )
        if self.classifier_c <= 0:
            raise LemonError(f"--classifier_c must be > 0, got {self.classifier_c}.")
        if self.precision not in PRECISIONS:
            raise LemonError(
                f"Unknown precision '{self.precision}'. Available: {', '.join(PRECISIONS)}."
            )
        return self

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> DownstreamConfig:
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def filter_label(self) -> str:
        """The filter in words: 'none', 'random 40%', 'drop top 40%', 'flagged', 'keep 1000'."""
        if self.filter in ("random", "drop_top"):
            return f"{self.filter.replace('_', ' ')} {self.fraction:.0%}"
        if self.filter == "keep_n":
            return f"keep {self.keep_n}"
        return self.filter
