"""RunConfig: the single source of run_lemon's flags, defaults and cross-field rules.

Flag names follow the original LEMoN ``run_lemon.py`` so old commands still work; our own additions
(``--embeddings``, ``--data_dir``, ``--scorer``, fixed hyper-parameters, ...) sit beside them. The argparse
parser is generated from the dataclass fields, so ``--help``, validation and defaults never drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from lemon.errors import LemonError

HPARAM_NAMES = ("beta", "gamma", "tau_1_n", "tau_2_n", "tau_1_m", "tau_2_m")
ABLATIONS = (
    "none",
    "tau_1",
    "tau_2",
    "tau_1_2",
    "beta",
    "gamma",
    "d1",
    "only_beta",
    "only_gamma",
    "multimodal_baseline",
)
DIST_TYPES = ("cosine", "euclidean")
LEMON_FIX = {
    "knn_k": 30,
    "dist_type": "cosine",
    "beta": 5.0,
    "gamma": 5.0,
    "tau_1_n": 0.1,
    "tau_2_n": 5.0,
    "tau_1_m": 0.1,
    "tau_2_m": 5.0,
}
DEFAULT_KNN_K = 5  # the original run_lemon's default


def _opt(
    default: Any,
    help: str,
    choices: Callable[[], Sequence[str]] | Sequence[str] | None = None,
    flag_type: type | None = None,
    original: bool = False,
) -> Any:
    """A dataclass field carrying its argparse help/choices."""
    return field(
        default=default,
        metadata={"help": help, "choices": choices, "type": flag_type, "original": original},
    )


def _dataset_names() -> list[str]:
    from lemon.data import DATASETS

    return DATASETS.names(include_aliases=True)


def _scorer_names() -> list[str]:
    from lemon.scorers import SCORERS

    return SCORERS.names(include_aliases=True)


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on. ``None`` means "resolved from the dataset / preset" (see resolve)."""

    output_dir: str = _opt(
        "", "Folder for args.json, scores.csv, hparams.json, metrics.json, done.", original=True
    )
    exp_name: str | None = _opt(
        None, "Free-form experiment name, stored in args.json.", original=True
    )
    # data
    dataset: str = _opt(
        "cifar100",
        "Dataset registry name ('embeddings' reads --embeddings).",
        _dataset_names,
        original=True,
    )
    embeddings: str | None = _opt(
        None,
        "Precomputed embeddings .npz for --dataset embeddings "
        "(format: README 'Bring your own embeddings').",
    )
    noise_type: str | None = _opt(
        None,
        "Noise injected into the observed labels/captions "
        "(default: the dataset's first supported type).",
        original=True,
    )
    noise_level: float | None = _opt(
        None,
        "Fraction of noisy samples, in [0, 1) (default 0.4; 0 with --real_dataset).",
        original=True,
    )
    real_dataset: bool = _opt(
        False,
        "No injected noise and no ground truth: fixed hyper-parameters, no selection.",
        original=True,
    )
    data_seed: int = _opt(0, "Seed of splits, noise and the reference-set subset.", original=True)
    data_dir: str | None = _opt(
        None, "Dataset root (else $LEMON_DATA_DIR, else ~/.cache/lemon/data)."
    )
    custom_cifar_prompt: str | None = _opt(
        None, "Prompt prefix for class names (default 'A photo of a ').", original=True
    )
    compr_dataset_size_limit: int = _opt(
        50000, "Cap on the reference (train) set, by a seeded subset.", original=True
    )
    subset_val_set: int | None = _opt(
        None, "Use only this many (seeded) val samples for selection.", original=True
    )
    n_synthetic: int = _opt(2000, "Reference-set size of --dataset synthetic (val/test = N/8).")
    # bring-your-own data (--dataset csv / parquet / folder; DataSources.md#csv)
    data_path: str | None = _opt(
        None,
        "Bring-your-own data: the table (.csv / .parquet) or the ImageFolder "
        "root (--dataset folder).",
    )
    image_root: str | None = _opt(
        None,
        "Folder that relative image paths of the table start from (default: the table's folder).",
    )
    image_column: str = _opt(
        "image", "Table column with the image path (parquet: or the image bytes)."
    )
    text_column: str = _opt(
        "caption", "Table column with the observed caption (captioning tables)."
    )
    label_column: str = _opt(
        "label", "Table column with the observed class label (classification tables)."
    )
    clean_column: str | None = _opt(
        None,
        "Optional table column with the clean caption/label: evaluate the "
        "table's own noise with --noise_type real.",
    )
    # embedding
    clip_model: str | None = _opt(
        None, "Embedder name (default: the dataset's, else huggingface_clip).", original=True
    )
    batch_size: int = _opt(128, "Embedding batch size.", original=True)
    num_workers: int = _opt(2, "DataLoader workers for image decoding.")
    device: str = _opt("auto", "'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...")
    cache_dir: str | None = _opt(
        None, "Embedding/model cache (else $LEMON_CACHE_DIR, else ~/.cache/lemon/cache)."
    )
    precision: str = _opt(
        "auto",
        "Embedding precision: auto (fp16 autocast on CUDA, fp32 on CPU), fp32, "
        "fp16 (CUDA only) or bf16.",
        ("auto", "fp32", "fp16", "bf16"),
    )
    # scoring
    scorer: str = _opt("lemon", "Scorer: lemon or a baseline.", _scorer_names)
    knn_k: int | None = _opt(
        None,
        f"Neighbours k (default {DEFAULT_KNN_K}, the dataset's own where it sets one "
        "(demo: 30); 30 with --lemon_fix).",
        original=True,
    )
    dist_type: str = _opt(
        "cosine", "Distance: cosine (1 - a.b) or euclidean (squared).", DIST_TYPES, original=True
    )
    knn_backend: str = _opt(
        "torch", "Exact kNN backend: torch (chunked matmul) or faiss.", ("torch", "faiss")
    )
    ablation: str = _opt("none", "Ablation of SPEC §5.", ABLATIONS, original=True)
    normalize_d1: bool = _opt(
        False, "Replace d_mm by the softmax over class prompts (classification).", original=True
    )
    use_discrete_for_text: bool = _opt(
        False, "Text distance = 1[observed texts differ].", original=True
    )
    legacy_discrete_weighting: bool = _opt(
        False,
        "Reproduce the original's un-negated s_n weight with --use_discrete_for_text and cosine.",
    )
    lemon_fix: bool = _opt(
        False, "The paper's fixed preset (k=30, cosine, beta=gamma=5, tau_1=0.1, tau_2=5)."
    )
    beta: float | None = _opt(None, "Fix beta (skips its selection).")
    gamma: float | None = _opt(None, "Fix gamma.")
    tau_1_n: float | None = _opt(None, "Fix tau_1_n.")
    tau_2_n: float | None = _opt(None, "Fix tau_2_n.")
    tau_1_m: float | None = _opt(None, "Fix tau_1_m.")
    tau_2_m: float | None = _opt(None, "Fix tau_2_m.")
    skip_hparam_optim: bool = _opt(
        False, "No selection: hyper-parameters not given take LEMoN_FIX values.", original=True
    )
    temperature: float = _opt(
        1.0,
        "Softmax temperature of the zero-shot class probabilities (clip_logits, "
        "zero-shot cleanlab scores, clipcleaner); the original used 1, its later analysis "
        "0.01 / 0.015 / 0.07 (CLIP's own).",
    )
    # run
    seed: int = _opt(0, "Seed of the hyper-parameter search and torch.", original=True)
    skip_train: bool = _opt(False, "Do not score the train split (val/test only).", original=True)
    debug: bool = _opt(False, "Verbose log; implies --skip_train (as the original).", original=True)
    overwrite: bool = _opt(False, "Replace a finished run in --output_dir.")
    report: bool = _opt(False, "Also write report.html (top suspected errors) into the run folder.")

    # ------------------------------------------------------------------ resolution and validation
    @property
    def fixed_hparams(self) -> dict[str, float]:
        """Hyper-parameters given on the command line (or by --lemon_fix)."""
        fixed = {name: LEMON_FIX[name] for name in HPARAM_NAMES} if self.lemon_fix else {}
        fixed.update(
            {n: float(getattr(self, n)) for n in HPARAM_NAMES if getattr(self, n) is not None}
        )
        return fixed

    @property
    def k(self) -> int:
        """--knn_k, else 30 with --lemon_fix, else the dataset's default_knn_k, else the original's 5."""
        from lemon.data import DATASETS

        if self.knn_k is not None:
            return self.knn_k
        if self.lemon_fix:
            return LEMON_FIX["knn_k"]
        dataset_k = DATASETS.get(self.dataset).default_knn_k if self.dataset in DATASETS else None
        return dataset_k or DEFAULT_KNN_K

    @property
    def prompt(self) -> str:
        from lemon.data.base import DEFAULT_PROMPT

        return DEFAULT_PROMPT if self.custom_cifar_prompt is None else self.custom_cifar_prompt

    @property
    def resolved_noise_level(self) -> float:
        if self.noise_level is not None:
            return self.noise_level
        return 0.0 if self.real_dataset else 0.4

    def validate(self) -> RunConfig:
        """Cross-field rules that do not need the data; raise LemonError with a fix."""
        if not self.output_dir:
            raise LemonError(
                "--output_dir is required (the folder that receives the run's outputs)."
            )
        level = self.resolved_noise_level
        if not 0 <= level < 1:
            raise LemonError(f"noise_level must be in [0, 1), got {level}.")
        if self.real_dataset and level != 0:
            raise LemonError(f"--real_dataset requires --noise_level 0, got {level}.")
        if self.knn_k is not None and self.knn_k < 1:
            raise LemonError(f"knn_k must be >= 1, got {self.knn_k}.")
        for name, allowed in (("dist_type", DIST_TYPES), ("ablation", ABLATIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise LemonError(f"Unknown {name} '{value}'. Available: {', '.join(allowed)}.")
        if self.lemon_fix and self.dist_type != "cosine":
            raise LemonError(
                "--lemon_fix is the cosine preset; drop --dist_type euclidean or --lemon_fix."
            )
        if self.lemon_fix and self.knn_k is not None and self.knn_k != LEMON_FIX["knn_k"]:
            raise LemonError(
                f"--lemon_fix uses k=30, got --knn_k {self.knn_k}; drop one of the two."
            )
        if self.legacy_discrete_weighting and not self.use_discrete_for_text:
            raise LemonError(
                "--legacy_discrete_weighting only applies with --use_discrete_for_text."
            )
        if self.dataset == "embeddings" and not self.embeddings:
            raise LemonError("--dataset embeddings needs --embeddings PATH.npz.")
        if self.embeddings and self.dataset != "embeddings":
            raise LemonError(
                f"--embeddings is only read with --dataset embeddings, got --dataset "
                f"{self.dataset}."
            )
        if self.subset_val_set is not None and self.subset_val_set < 2:
            raise LemonError(f"subset_val_set must be >= 2, got {self.subset_val_set}.")
        if self.compr_dataset_size_limit < 2:
            raise LemonError(
                f"compr_dataset_size_limit must be >= 2, got {self.compr_dataset_size_limit}."
            )
        if self.batch_size < 1 or self.num_workers < 0:
            raise LemonError("batch_size must be >= 1 and num_workers >= 0.")
        if self.temperature <= 0:
            raise LemonError(f"temperature must be > 0, got {self.temperature}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def run_hash(args: dict[str, Any]) -> str:
    """md5 of the sorted args a sweep sets (not the defaults), so new flags don't orphan old runs."""
    return hashlib.md5(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()


def build_parser() -> argparse.ArgumentParser:
    """argparse parser generated from RunConfig's fields (flag names = field names)."""
    parser = argparse.ArgumentParser(
        prog="python -m run_lemon",
        description="LEMoN: label error detection with multimodal neighbours (one evaluation run).",
    )
    for f in fields(RunConfig):
        meta = f.metadata
        flag = f"--{f.name}"
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=meta["help"])
            continue
        choices = meta["choices"]
        kwargs: dict[str, Any] = {"default": f.default, "help": meta["help"]}
        kwargs["type"] = _flag_type(f)
        if choices is not None:
            kwargs["metavar"] = "NAME"
            names = choices() if callable(choices) else choices
            kwargs["help"] += f" Choices: {', '.join(names)}."
        parser.add_argument(flag, **kwargs)
    return parser


def _flag_type(f: dataclasses.Field) -> type:
    text = str(f.type)
    if "float" in text:
        return float
    if "int" in text:
        return int
    return str


def config_from_args(argv: Sequence[str] | None = None) -> RunConfig:
    """Parse ``argv`` into a validated RunConfig (names checked against registries later, with hints)."""
    ns = build_parser().parse_args(argv)
    cfg = RunConfig(**vars(ns))
    if cfg.debug and not cfg.skip_train:
        cfg = cfg.replace(skip_train=True)
    return cfg.validate()
