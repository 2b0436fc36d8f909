"""TrainConfig: everything a from-scratch CLIP training run depends on, and its flags.

The training flags are declared here; the flags that say where the data is (``--data_dir``, ``--data_path``,
the table's columns, ``--custom_cifar_prompt``) are run_lemon's own, declared once in
:mod:`lemon.run.config` and collected into :class:`~lemon.data.base.DataOptions`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lemon.core.errors import LemonError
from lemon.core.flags import flag
from lemon.data.base import DataOptions

#: help groups of train_clip_from_scratch.py, in the order --help shows them
GROUPS = {
    "data": "data (what to train on)",
    "training": "training",
    "output": "output",
    "compute": "compute",
}
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """Everything a from-scratch training run depends on (``train_clip_from_scratch.py --help``)."""

    output_dir: str = flag(
        "",
        "Checkpoint folder to write (open_clip layout; pass it to run_lemon --clip_model).",
        "output",
    )
    dataset: str = flag("demo", "Dataset to train on (as run_lemon --dataset).", "data")
    split: str = flag("train", "Split to train on.", "data")
    data_seed: int = flag(0, "Seed of the splits and the noise.", "data")
    noise_type: str | None = flag(
        None,
        "Noise injected into the training captions/labels (default: the dataset's first).",
        "data",
    )
    noise_level: float = flag(0.0, "Fraction of noisy pairs (0 = train on the data as is).", "data")
    folds: int = flag(
        1,
        "Train K models, each without one K-th of the training images, into DIR/fold_<k>; "
        "run_lemon --clip_model DIR then embeds every pair with the model that never saw it.",
        "data",
    )
    filter_scores: str | None = flag(
        None,
        "A previous run's scores.csv: train on its cleanest pairs (with --keep_top_n).",
        "data",
    )
    keep_top_n: int | None = flag(
        None, "How many lowest-score train pairs of --filter_scores to keep.", "data"
    )
    model: str = flag(
        "lemon-tiny",
        "lemon-tiny, lemon-demo, an open_clip architecture (e.g. ViT-B-32) or a model-config .json.",
        "training",
    )
    epochs: int = flag(10, "Passes over the training pairs.", "training")
    batch_size: int = flag(128, "Pairs per contrastive batch.", "training")
    lr: float = flag(1e-3, "Peak AdamW learning rate (linear warm-up, cosine decay).", "training")
    weight_decay: float = flag(
        0.1, "AdamW weight decay (not on gains, biases, embeddings, logit scale).", "training"
    )
    warmup_steps: int = flag(50, "Linear warm-up steps.", "training")
    mask_identical_captions: bool = flag(
        False,
        "Pairs with identical captions in a batch (classification prompts) are not negatives of "
        "each other in the contrastive loss.",
        "training",
    )
    seed: int = flag(0, "Seed of the initial weights and the batch order.", "training")
    num_workers: int = flag(2, "DataLoader workers decoding images.", "compute")
    device: str = flag("auto", "'auto' (CUDA when present), 'cpu', 'cuda', ...", "compute")
    precision: str = flag(
        "auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16.", "compute", PRECISIONS
    )
    resume: bool = True
    #: where the data is (run_lemon's data-source flags); its data_seed is ``data_seed`` above
    data: DataOptions = dataclasses.field(default_factory=DataOptions)

    def validate(self) -> TrainConfig:
        if not self.output_dir:
            raise LemonError("--output_dir is required (the checkpoint folder to write).")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise LemonError(
                f"need epochs >= 1, batch_size >= 2 and lr > 0, got {self.epochs}, "
                f"{self.batch_size}, {self.lr}."
            )
        if self.folds < 1:
            raise LemonError(f"--folds must be >= 1 (1 = one model), got {self.folds}.")
        if (self.filter_scores is None) != (self.keep_top_n is None):
            raise LemonError(
                "--filter_scores and --keep_top_n go together: keep the N pairs of a previous run's "
                "scores.csv with the lowest score."
            )
        if self.precision not in PRECISIONS:
            raise LemonError(
                f"Unknown training precision '{self.precision}'. Available: {', '.join(PRECISIONS)}."
            )
        return self

    @property
    def data_options(self) -> DataOptions:
        """The data-source options with this run's data seed."""
        return dataclasses.replace(self.data, data_seed=self.data_seed)

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], **fixed: Any) -> TrainConfig:
        """A TrainConfig from flag values: training flags by name, the rest run_lemon's data-source flags
        (unknown names fail, listing the valid ones)."""
        from lemon.data.base import SOURCE_FLAGS, DataOptions

        own = {f.name for f in dataclasses.fields(cls)} - {"data"}
        unknown = sorted(set(flags) - own - set(SOURCE_FLAGS))
        if unknown:
            raise LemonError(
                f"Unknown training options {unknown}; allowed: {', '.join(sorted(own | set(SOURCE_FLAGS)))}."
            )
        source = {k: v for k, v in flags.items() if k in SOURCE_FLAGS}
        mine = {k: v for k, v in flags.items() if k in own}
        return cls(**mine, **fixed, data=DataOptions.from_flags(source))
