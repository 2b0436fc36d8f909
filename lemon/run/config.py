"""RunConfig: the single source of run_lemon's flags, defaults and cross-field rules.

Flag names follow the original LEMoN ``run_lemon.py`` so old commands still work; our own additions
(``--embeddings``, ``--data_dir``, ``--scorer``, fixed hyper-parameters, ...) sit beside them. The parser is
generated from the fields (:mod:`lemon.core.flags`), so ``--help``, validation and defaults never drift. A
scorer's own flags (``--blip_model``, ``--vdc_questions``, ...) are declared by the scorer, in its ``Options``
(:mod:`lemon.scorers.flags`); RunConfig holds those given in ``scorer_flags``. Only the
entry points and :func:`lemon.run.pipeline.run` read a RunConfig; everything below them takes explicit options.
Building the parser imports no torch: ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lemon.core.errors import LemonError
from lemon.core.flags import HelpfulParser, add_flag, add_flags, flag, flag_fields
from lemon.data.base import IMAGE_IDENTITIES, DataOptions
from lemon.data.images import DEFAULT_MAX_PIXELS
from lemon.data.labels import CONFLICTING_LABELS, LABEL_VARIANTS
from lemon.embed.base import IMAGE_DECODES, PRECISIONS
from lemon.method.hparams import (
    ABLATIONS,
    DIST_TYPES,
    HPARAM_NAMES,
    LEMON_FIX_HPARAMS,
    LEMON_FIX_K,
)
from lemon.neighbors.base import KNN_BACKENDS

#: help groups of run_lemon, in the order --help shows them
GROUPS = {
    "data": "data (what is scored)",
    "model": "model (the embedding stage)",
    "method": "method (LEMoN or a baseline, and its settings)",
    "selection": "selection (hyper-parameters and thresholds chosen on the labelled val split)",
    "evaluation": "evaluation",
    "output": "output",
    "compute": "compute",
}


def _dataset_names() -> list[str]:
    from lemon.data import DATASETS

    return DATASETS.names(include_aliases=True)


def _scorer_names() -> list[str]:
    from lemon.scorers import SCORERS

    return SCORERS.names(include_aliases=True)


def _noise_names() -> list[str]:
    from lemon.noise import NOISES

    return NOISES.names(include_aliases=True)


def _embedder_names() -> list[str]:
    from lemon.embed import EMBEDDERS

    return [
        *EMBEDDERS.names(),
        "open_clip:ARCH/PRETRAINED",
        "hf-hub:ORG/REPO",
        "a checkpoint folder",
    ]


def _hparam(name: str) -> Any:
    return flag(None, f"Fix {name} (not selected on val).", "method")


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on. ``None`` means "resolved from the dataset / preset" by the pipeline."""

    # data
    dataset: str = flag(
        "cifar100",
        "Dataset to score ('embeddings' reads --embeddings; csv/parquet/folder read --data_path).",
        "data",
        _dataset_names,
    )
    data_dir: str | None = flag(
        None,
        "Dataset root (else $LEMON_DATA_DIR, else ~/.cache/lemon/data).",
        "data",
        identity=False,
    )
    data_path: str | None = flag(
        None,
        "Your own data: the table (.csv / .parquet) or the ImageFolder root (--dataset folder).",
        "data",
    )
    image_root: str | None = flag(
        None,
        "Folder that relative image paths of a table start from (default: its folder).",
        "data",
    )
    image_column: str = flag("image", "Table column with the image path (or bytes).", "data")
    text_column: str = flag("caption", "Table column with the caption (captioning).", "data")
    label_column: str = flag("label", "Table column with the class label (classification).", "data")
    clean_column: str | None = flag(
        None, "Table column with the true caption/label, to evaluate the table's own noise.", "data"
    )
    class_names: str | None = flag(
        None,
        "Text file of class names, one a line: line i names integer label i (or the i-th sorted "
        "label / folder name), so prompts read words, not numbers.",
        "data",
    )
    label_variants: str = flag(
        "merge",
        "Labels that differ only in case, spacing or leading zeros (cat / CAT / 'cat ', 3 / 03): merge "
        "= one class (the most frequent spelling), keep = separate classes; either way a warning counts "
        "them.",
        "data",
        LABEL_VARIANTS,
    )
    conflicting_labels: str = flag(
        "keep",
        "One image given two or more different class labels: keep = score every pair (warned), first "
        "= keep its first row, drop = drop them all (listed in dropped.csv).",
        "data",
        CONFLICTING_LABELS,
    )
    max_image_pixels: int | None = flag(
        None,
        "Largest image (width x height) decoded; larger ones are dropped and listed in dropped.csv "
        f"(default {DEFAULT_MAX_PIXELS:,}, PIL's own limit).",
        "data",
    )
    embeddings: str | None = flag(
        None,
        "Precomputed embeddings .npz for --dataset embeddings (docs/data.md: Bring your own embeddings).",
        "data",
    )
    n_synthetic: int = flag(
        2000, "Reference-set size of --dataset synthetic (val/test N/8).", "data"
    )
    noise_type: str | None = flag(
        None,
        "Noise injected into the observed labels/captions (default: the dataset's first).",
        "data",
        _noise_names,
    )
    noise_level: float | None = flag(
        None,
        "Fraction of noisy pairs, in [0, 1) (default 0.4; 0 with --real_dataset).",
        "data",
    )
    real_dataset: bool = flag(
        False,
        "Score the data as it is: no injected noise, no ground truth, no selection (LEMoN_FIX "
        "settings: k=30 and the fixed hyper-parameters, unless given).",
        "data",
    )
    data_seed: int = flag(0, "Seed of splits, noise and the reference-set subset.", "data")
    custom_cifar_prompt: str | None = flag(
        None,
        "Prompt prefix of class names (default 'A photo of a ').",
        "data",
        identity=False,  # the paper pools both prompts of its grids
    )
    # model
    clip_model: str | None = flag(
        None,
        "Embedder (default: the dataset's, else huggingface_clip = openai/clip-vit-base-patch32); "
        "a folder of train_clip_from_scratch.py --folds K embeds each pair out of fold.",
        "model",
        _embedder_names,
    )
    cache_dir: str | None = flag(
        None,
        "Embedding/model cache (else $LEMON_CACHE_DIR, else ~/.cache/lemon/cache).",
        "model",
        identity=False,
    )
    image_identity: str = flag(
        "stat",
        "How the embedding cache recognises image files: 'stat' = size + modification time (fast; misses "
        "a file replaced by one of the same size with its mtime kept, as cp -p / rsync -a do), "
        "'content' = a hash of their bytes (reads every image).",
        "model",
        IMAGE_IDENTITIES,
        identity=False,
    )
    image_decode: str = flag(
        "cpu",
        "Where images are decoded: cpu (PIL in DataLoader workers) or gpu (nvJPEG and the model's "
        "resize/crop on the GPU; pixels differ from PIL's by rounding).",
        "model",
        IMAGE_DECODES,
    )
    # method
    scorer: str = flag("lemon", "Scorer: lemon or a baseline.", "method", _scorer_names)
    detector: str | None = flag(
        None,
        "A finished run's folder: score this run's data against its reference set with its model, "
        "hyper-parameters and threshold, fitting nothing (docs/detector.md).",
        "method",
        metavar="RUN_DIR",
    )
    lemon_fix: bool = flag(
        False,
        "The paper's fixed setting LEMoN_FIX (k=30, cosine, beta=gamma=5, tau_1=0.1, tau_2=5).",
        "method",
    )
    knn_k: int | None = flag(
        None,
        "Neighbours k (default 5 as the original; the dataset's own where it sets one; 30 with "
        "--lemon_fix or --real_dataset).",
        "method",
    )
    dist_type: str = flag(
        "cosine",
        "Distance: cosine (1 - a.b) or squared euclidean.",
        "method",
        DIST_TYPES,
    )
    ablation: str = flag("none", "Drop or freeze terms of the score.", "method", ABLATIONS)
    normalize_d1: bool = flag(
        False,
        "Replace d_mm by the softmax over the class prompts at the observed label (classification).",
        "method",
    )
    use_discrete_for_text: bool = flag(False, "Text distance = 1[observed texts differ].", "method")
    legacy_discrete_weighting: bool = flag(
        False,
        "Reproduce the original's un-negated s_n weight with --use_discrete_for_text and cosine.",
        "method",
    )
    compr_dataset_size_limit: int = flag(
        50000, "Cap on the reference (train) set, by a seeded subset.", "method"
    )
    temperature: float = flag(
        1.0,
        "Softmax temperature of zero-shot class probabilities (clip_logits, cleanlab scores, "
        "clipcleaner); CLIP's own is 0.01.",
        "method",
    )
    beta: float | None = _hparam("beta")
    gamma: float | None = _hparam("gamma")
    tau_1_n: float | None = _hparam("tau_1_n")
    tau_2_n: float | None = _hparam("tau_2_n")
    tau_1_m: float | None = _hparam("tau_1_m")
    tau_2_m: float | None = _hparam("tau_2_m")
    # selection
    skip_hparam_optim: bool = flag(
        False,
        "No selection: hyper-parameters not given take LEMoN_FIX values.",
        "selection",
    )
    subset_val_set: int | None = flag(
        None,
        "Select on only this many (seeded) val pairs; -1 = all of them.",
        "selection",
    )
    reviewed: str | None = flag(
        None,
        "decisions.csv from reviewing this data's flags (the report's review page): the reviewed pairs "
        "are labels for selecting the hyper-parameters (LEMoN_OPT) and the flag threshold, and the "
        "audited ones give the noise rate with a 95 percent interval (docs/review.md).",
        "selection",
    )
    seed: int = flag(0, "Seed of the hyper-parameter search and torch.", "selection")
    search_budget: float = flag(
        1.0, "Multiply the hyper-parameter search's budget (points, starts, polish).", "selection"
    )
    # evaluation
    skip_train: bool = flag(
        False,
        "Do not score the train split (val/test only).",
        "evaluation",
        identity=False,
    )
    # output
    output_dir: str = flag(
        "",
        "Folder receiving args.json, scores.csv, metrics.json, ... (required).",
        "output",
    )
    exp_name: str | None = flag(None, "Free-form experiment name (args.json).", "output")
    overwrite: bool = flag(False, "Replace a finished run in --output_dir.", "output")
    report: bool = flag(
        False, "Also write report.html: review every flagged pair in a browser.", "output"
    )
    save_neighbours: str = flag(
        "auto",
        "Write neighbours.npz (2k neighbour ids per row): auto = for runs of at most 200,000 rows.",
        "output",
        ("auto", "always", "never"),
    )
    scores_parquet: str = flag(
        "auto",
        "Also write scores.parquet: auto = for runs of more than 200,000 rows, when pyarrow is "
        "installed.",
        "output",
        ("auto", "always", "never"),
    )
    debug: bool = flag(False, "Verbose log; implies --skip_train.", "output")
    # compute
    device: str = flag(
        "auto", "'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...", "compute"
    )
    precision: str = flag(
        "auto",
        "Embedding precision (auto: fp16 autocast on CUDA, fp32 on CPU).",
        "compute",
        PRECISIONS,
    )
    batch_size: int = flag(128, "Embedding batch size.", "compute")
    num_workers: int = flag(2, "DataLoader workers decoding images.", "compute")
    knn_backend: str = flag(
        "auto",
        "kNN search: auto (exact: float32, above 2e9 query x reference pairs bfloat16 candidates "
        "re-ranked in float32 where the CPU has them, float16 on a GPU; approximate ivf_gemm above "
        "3e10 pairs on a CPU), torch (exact float32), torch_fp16/torch_bf16 (exact up to ties), "
        "faiss (exact), ivf_gemm/ivf/hnsw (approximate: recall measured every run).",
        "compute",
        KNN_BACKENDS,
    )
    knn_nlist: int | None = flag(
        None,
        "IVF lists (default: 32 for ivf_gemm, about 4 sqrt(reference size) for ivf).",
        "compute",
        identity=True,
    )
    knn_nprobe: int | None = flag(
        None,
        "IVF lists scanned per query (default: 12 for ivf_gemm, nlist / 8 for ivf).",
        "compute",
        identity=True,
    )
    knn_recall_sample: int = flag(
        1000,
        "Queries on which a non-float32 search is compared with exact search (search/knn_recall_at_k "
        "in metrics.json); 0 = never.",
        "compute",
    )
    stream_block: int = flag(
        65536,
        "Rows per block when a large split is searched and scored (memory O(block + N k)).",
        "compute",
    )
    score_parts: int = flag(
        1,
        "Score every split in this many row ranges (parts), kept in the cache: a rerun scores only the "
        "parts not done, and python -m lemon.scale.parts scores them as parallel jobs (Slurm, local workers).",
        "compute",
    )
    #: the scorers' own flags (``--blip_model``, ``--vdc_questions``, ...: each scorer's ``Options``,
    #: :mod:`lemon.scorers.flags`) set to other than their defaults, by flag name
    scorer_flags: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ resolution and validation
    @property
    def fixed_hparams(self) -> dict[str, float]:
        """Hyper-parameters given on the command line (or by --lemon_fix)."""
        fixed = dict(LEMON_FIX_HPARAMS) if self.lemon_fix else {}
        fixed.update(
            {n: float(getattr(self, n)) for n in HPARAM_NAMES if getattr(self, n) is not None}
        )
        return fixed

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
        if self.real_dataset and self.clean_column:
            raise LemonError(
                f"--real_dataset scores without ground truth, but --clean_column "
                f"'{self.clean_column}' gives it: drop --real_dataset to evaluate against that column "
                "(the table's own noise; the label-free estimate and flags are reported too), or drop "
                "--clean_column."
            )
        if self.max_image_pixels is not None and self.max_image_pixels < 1:
            raise LemonError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}.")
        if self.knn_k is not None and self.knn_k < 1:
            raise LemonError(f"knn_k must be >= 1, got {self.knn_k}.")
        for name, allowed in (
            ("dist_type", DIST_TYPES),
            ("ablation", ABLATIONS),
            ("knn_backend", KNN_BACKENDS),
            ("precision", PRECISIONS),
            ("image_identity", IMAGE_IDENTITIES),
            ("image_decode", IMAGE_DECODES),
            ("label_variants", LABEL_VARIANTS),
            ("conflicting_labels", CONFLICTING_LABELS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise LemonError(f"Unknown {name} '{value}'. Available: {', '.join(allowed)}.")
        if self.lemon_fix and self.dist_type != "cosine":
            raise LemonError(
                "--lemon_fix is the cosine preset; drop --dist_type euclidean or --lemon_fix."
            )
        if self.lemon_fix and self.knn_k is not None and self.knn_k != LEMON_FIX_K:
            raise LemonError(
                f"--lemon_fix uses k={LEMON_FIX_K}, got --knn_k {self.knn_k}; drop one of the two."
            )
        if self.legacy_discrete_weighting and not self.use_discrete_for_text:
            raise LemonError(
                "--legacy_discrete_weighting only applies with --use_discrete_for_text."
            )
        if self.dataset == "embeddings" and not self.embeddings:
            raise LemonError("--dataset embeddings needs --embeddings PATH.npz.")
        if self.embeddings and self.dataset != "embeddings":
            raise LemonError(
                f"--embeddings is only read with --dataset embeddings, got --dataset {self.dataset}."
            )
        if (
            self.subset_val_set is not None
            and self.subset_val_set != -1
            and self.subset_val_set < 2
        ):
            raise LemonError(
                f"subset_val_set must be >= 2 (or -1 for the whole val split), got "
                f"{self.subset_val_set}."
            )
        if self.compr_dataset_size_limit < 2:
            raise LemonError(
                f"compr_dataset_size_limit must be >= 2, got {self.compr_dataset_size_limit}."
            )
        if self.batch_size < 1 or self.num_workers < 0:
            raise LemonError("batch_size must be >= 1 and num_workers >= 0.")
        if self.temperature <= 0:
            raise LemonError(f"temperature must be > 0, got {self.temperature}.")
        if self.search_budget <= 0:
            raise LemonError(f"search_budget must be > 0, got {self.search_budget}.")
        self._validate_scale()
        self._validate_scorer_flags()
        return self

    def _validate_scorer_flags(self) -> None:
        """The scorers' own flags: known, read by --scorer (a flag of another scorer is refused rather
        than ignored), and accepted by its Options (ranges, choices)."""
        from lemon.scorers import SCORERS
        from lemon.scorers.flags import check_given

        if self.scorer in SCORERS:  # an unknown scorer is named by check_names
            check_given(self.scorer, self.scorer_flags)

    def _validate_scale(self) -> None:
        """The kNN search and streaming flags."""
        for name in ("knn_nlist", "knn_nprobe", "stream_block"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LemonError(f"{name} must be >= 1, got {value}.")
        if self.knn_recall_sample < 0:
            raise LemonError(f"knn_recall_sample must be >= 0, got {self.knn_recall_sample}.")
        if self.score_parts < 1:
            raise LemonError(f"score_parts must be >= 1, got {self.score_parts}.")
        if self.score_parts > 1 and self.save_neighbours == "always":
            raise LemonError(
                "--save_neighbours always cannot be combined with --score_parts: parts keep one score "
                "row per pair, not its neighbours; drop one of the two."
            )
        ivf = ("ivf", "ivf_gemm", "auto")
        for name in ("knn_nlist", "knn_nprobe"):
            if getattr(self, name) is not None and self.knn_backend not in ivf:
                raise LemonError(
                    f"--{name} only applies to the IVF search; drop it or pass --knn_backend ivf "
                    f"(got --knn_backend {self.knn_backend})."
                )
        for name in ("save_neighbours", "scores_parquet"):
            if getattr(self, name) not in ("auto", "always", "never"):
                raise LemonError(
                    f"Unknown {name} '{getattr(self, name)}'. Available: auto, always, never."
                )

    def to_dict(self) -> dict[str, Any]:
        """Every run_lemon flag and its value, flat (args.json): the scorers' own flags included."""
        from lemon.scorers.flags import defaults

        values = dataclasses.asdict(self)
        given = values.pop("scorer_flags")
        return {**values, **defaults(), **given}

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> RunConfig:
        """The RunConfig of run_lemon flag values by name (the scorers' own flags among them); an unknown
        name is a one-line error."""
        from lemon.scorers.flags import all_flags, given

        own = {f.name for f in dataclasses.fields(cls)} - {"scorer_flags"}
        unknown = sorted(set(values) - own - set(all_flags()))
        if unknown:
            raise LemonError(
                f"Unknown run_lemon flag(s) {', '.join(unknown)}; see python -m run_lemon --help."
            )
        return cls(**{n: v for n, v in values.items() if n in own}, scorer_flags=given(values))

    def data_options(self) -> DataOptions:
        """What the dataset reads of this run."""
        return DataOptions.from_flags({**self.to_dict(), "noise_level": self.resolved_noise_level})

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` (run_lemon flag names, the scorers' own flags among them)."""
        from lemon.scorers.flags import all_flags, given

        own = {n: changes.pop(n) for n in list(changes) if n in all_flags()}
        if own:
            changes["scorer_flags"] = given({**self.scorer_flags, **own})
        return dataclasses.replace(self, **changes)


def flag_names() -> list[str]:
    """Every run_lemon flag name: RunConfig's fields, then the scorers' own flags."""
    from lemon.scorers.flags import all_flags

    return [f.name for f in flag_fields(RunConfig)] + list(all_flags())


def execution_fields() -> frozenset[str]:
    """run_lemon flags that say where or how a run executes, not what it computes."""
    from lemon.scorers.flags import all_flags

    fields = [*flag_fields(RunConfig), *(sf.field for sf in all_flags().values())]
    return frozenset(f.name for f in fields if not f.metadata["identity"])


def run_hash(args: dict[str, Any]) -> str:
    """md5 of the sorted args a sweep sets (not the defaults), so new flags don't orphan old runs."""
    return hashlib.md5(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=2)
def build_parser(raise_errors: bool = False) -> HelpfulParser:
    """run_lemon's parser, generated from RunConfig's fields (flag names = field names), grouped (built
    once per process: checking the thousands of jobs of a sweep parses with the same parser)."""
    parser = HelpfulParser(
        raise_errors=raise_errors,
        prog="python -m run_lemon",
        usage="python -m run_lemon --dataset NAME --output_dir DIR [options]  (--help lists them)",
        description="LEMoN: find mislabelled image-text pairs with multimodal neighbours (one run).",
        epilog="F1 columns of the summary: F1 at a threshold chosen on the val labels (optimal: the "
        "best val F1; prevalence: flags the val mislabel rate) or without labels (label_free, "
        "heuristic). See docs/method.md and docs/label-free.md.",
    )
    add_run_flags(parser)
    return parser


def add_run_flags(
    parser: argparse.ArgumentParser,
    groups: Mapping[str, str] = GROUPS,
    only: Sequence[str] | None = None,
) -> None:
    """run_lemon's flags (or those in ``only``) on ``parser``, in ``groups``: RunConfig's fields, and
    after the method group the scorers' own options, one group per set of scorers reading them."""
    from lemon.scorers.flags import all_flags

    own = [sf for sf in all_flags().values() if only is None or sf.name in only]
    clash = sorted({sf.name for sf in own} & {f.name for f in flag_fields(RunConfig)})
    if clash:
        raise TypeError(
            f"Scorer option(s) {', '.join(clash)} clash with run_lemon flags of RunConfig."
        )
    keys = list(groups)
    at = keys.index("method") + 1 if "method" in keys else len(keys)
    titles = {sf.group: sf.group for sf in own}
    ordered = {**{k: groups[k] for k in keys[:at]}, **titles, **{k: groups[k] for k in keys[at:]}}
    sections = add_flags(parser, RunConfig, ordered, only)
    for sf in own:
        add_flag(sections[sf.group], sf.owner, sf.field)


def config_from_args(argv: Sequence[str] | None = None, raise_errors: bool = False) -> RunConfig:
    """Parse ``argv`` into a validated RunConfig (``raise_errors``: a bad flag raises LemonError instead
    of exiting); registry names are checked by :func:`check_names`."""
    ns = build_parser(raise_errors).parse_args(argv)
    cfg = RunConfig.from_flags(vars(ns))
    if cfg.debug and not cfg.skip_train:
        cfg = cfg.replace(skip_train=True)
    return cfg.validate()


def check_names(cfg: RunConfig) -> None:
    """Refuse names no registry knows, or that do not go together, before any work (one line each).

    The dataset, the scorer and the noise type must exist; the noise type must suit the dataset and the
    scorer its task. No data is read and no model loaded.
    """
    from lemon.data import DATASETS
    from lemon.noise import NOISES
    from lemon.scorers import SCORERS

    dataset = DATASETS.get(cfg.dataset)
    scorer = SCORERS.get(cfg.scorer)
    if cfg.noise_type is not None:
        noise = NOISES.canonical(cfg.noise_type)
        if noise not in dataset.noise_types:
            supported = ", ".join(dataset.noise_types) or "none (the data carries its own labels)"
            raise LemonError(
                f"Noise type '{cfg.noise_type}' is not supported for dataset '{cfg.dataset}'; "
                f"supported: {supported}."
            )
    if scorer.needs_images and dataset.precomputed:
        raise LemonError(
            f"Scorer '{cfg.scorer}' runs a model on each pair's image and text, but --dataset "
            f"{cfg.dataset} holds embeddings only; run it on a dataset with images (e.g. --dataset "
            "demo, csv, folder or one of the paper's)."
        )
    if dataset.task != "any" and dataset.task not in scorer.tasks:
        capable = [n for n in SCORERS.names() if dataset.task in SCORERS.get(n).tasks]
        raise LemonError(
            f"Scorer '{cfg.scorer}' does not work on {dataset.task} data (dataset '{cfg.dataset}'); "
            f"scorers for {dataset.task} data: {', '.join(capable)}."
        )
