"""The experiments of the LEMoN paper (names and grids of the original code), plus smoke tests.

Usage:
    python sweep.py status --experiment lemon_all --output_root runs
    python sweep.py launch --experiment smoke --output_root runs --command_launcher local_parallel

Each experiment is a declarative grid of run_lemon flags (``script`` names another entry point where the
original used one). Joint variation (each dataset with its own noise types and models) is a list of
sub-grids merged over a common part; see :func:`lemon.sweep.expand`. No paths: a run that consumes another
run's output names it with :class:`lemon.sweep.RunRef`.
"""

from __future__ import annotations

from lemon.core.registry import Registry
from lemon.sweep.grid import Experiment, RunRef, expand

EXPERIMENTS: Registry = Registry("experiment")


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: register ``cls`` in EXPERIMENTS under ``cls.name`` (and ``cls.aliases``)."""
    return EXPERIMENTS.register(cls.name, aliases=cls.aliases)(cls)


K = [1, 2, 5, 10, 15, 20, 30, 50]
SEEDS = [0, 1, 2]
DISTS = ["euclidean", "cosine"]
HF, BIOMED = "huggingface_clip", "biomed_clip"
PROMPTS = ["", "A photo of a "]
ABLATIONS = ["none", "tau_1", "tau_2", "tau_1_2", "beta", "gamma", "multimodal_baseline"]
NOISE_LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


@register
class LemonAll(Experiment):
    """Main table: LEMoN_OPT and the CLIP-similarity baseline on every dataset and noise type."""

    name = "lemon_all"

    def grid(self):
        return expand(
            [
                dict(
                    dataset=["mscoco", "mmimdb"],
                    noise_type=["random", "cat", "noun"],
                    clip_model=HF,
                    custom_cifar_prompt="",
                    use_discrete_for_text=False,
                ),
                dict(
                    dataset="flickr30k",
                    noise_type=["random", "noun"],
                    clip_model=HF,
                    custom_cifar_prompt="",
                    use_discrete_for_text=False,
                ),
                dict(
                    dataset="mimiccxr_caption",
                    noise_type=["random", "cat"],
                    clip_model=BIOMED,
                    custom_cifar_prompt="",
                    use_discrete_for_text=False,
                ),
                dict(
                    dataset=["cifar10", "cifar100"],
                    noise_type=["real", "symmetric", "asymmetric"],
                    clip_model=HF,
                    custom_cifar_prompt=PROMPTS,
                    use_discrete_for_text=True,
                ),
                dict(
                    dataset=["stanford_cars", "mini_imagenet"],
                    noise_type="real",
                    clip_model=HF,
                    custom_cifar_prompt=PROMPTS,
                    use_discrete_for_text=True,
                ),
            ],
            common=dict(
                dist_type=DISTS,
                normalize_d1=False,
                noise_level=0.4,
                ablation=["none", "multimodal_baseline"],
                knn_k=K,
                data_seed=SEEDS,
            ),
        )


@register
class LemonCaptionReal(Experiment):
    """Real (un-injected) noise: LEMoN_FIX-style k=30 runs whose top-scored pairs are inspected by hand."""

    name = "lemon_caption_real"
    aliases = ("multimodal_knn_caption_real",)

    def grid(self):
        return expand(
            [
                dict(
                    dataset="mscoco",
                    noise_type="random",
                    clip_model=HF,
                    use_discrete_for_text=False,
                ),
                dict(
                    dataset="flickr30k",
                    noise_type="random",
                    clip_model=HF,
                    use_discrete_for_text=False,
                ),
                dict(
                    dataset="mimiccxr_caption",
                    noise_type="random",
                    clip_model=BIOMED,
                    use_discrete_for_text=False,
                ),
                dict(
                    dataset=["cifar10", "cifar100"],
                    noise_type="asymmetric",
                    clip_model=HF,
                    use_discrete_for_text=True,
                ),
            ],
            common=dict(
                dist_type="cosine",
                normalize_d1=False,
                real_dataset=True,
                noise_level=0.0,
                ablation=["none", "multimodal_baseline"],
                knn_k=30,
                data_seed=0,
            ),
        )


@register
class DiscrepancyBaseline(Experiment):
    """Discrepancy (dis_x, dis_y) and diversity (div_x, div_y) baselines (the original's --method)."""

    name = "discrepancy_baseline"

    def grid(self):
        return expand(
            [
                dict(
                    dataset=["mscoco", "mmimdb"],
                    noise_type="cat",
                    clip_model=HF,
                    custom_cifar_prompt="",
                ),
                dict(dataset="flickr30k", noise_type="noun", clip_model=HF, custom_cifar_prompt=""),
                dict(
                    dataset="mimiccxr_caption",
                    noise_type="cat",
                    clip_model=BIOMED,
                    custom_cifar_prompt="",
                ),
                dict(
                    dataset=["cifar10", "cifar100", "stanford_cars", "mini_imagenet"],
                    noise_type="real",
                    clip_model=HF,
                    custom_cifar_prompt="A photo of a ",
                ),
            ],
            common=dict(
                noise_level=0.4,
                scorer=["dis_x", "dis_y", "div_x", "div_y"],
                knn_k=K,
                data_seed=SEEDS,
            ),
        )


@register
class VaryValSet(Experiment):
    """Size of the labelled validation set used for selection (-1 = all of it, as the original)."""

    name = "vary_val_set"

    def grid(self):
        return expand(
            [
                dict(dataset=["mscoco", "mmimdb"], noise_type="cat", clip_model=HF),
                dict(dataset="flickr30k", noise_type="noun", clip_model=HF),
                dict(dataset="mimiccxr_caption", noise_type="cat", clip_model=BIOMED),
            ],
            common=dict(
                dist_type=DISTS,
                normalize_d1=False,
                noise_level=0.4,
                ablation=["none", "multimodal_baseline"],
                knn_k=K,
                subset_val_set=[-1, 10, 50, 100, 500, 1000],
                data_seed=SEEDS,
                skip_train=True,
            ),
        )


_CAPTION_CAT_NOUN = [
    dict(dataset=["mscoco", "mmimdb"], noise_type="cat", clip_model=HF),
    dict(dataset="flickr30k", noise_type="noun", clip_model=HF),
]


@register
class LemonCaptionVaryNoise(Experiment):
    """Noise level 0.1-0.9: LEMoN with fixed hyper-parameters, and the CLIP-similarity baseline."""

    name = "lemon_caption_vary_noise"
    aliases = ("multimodal_knn_caption_vary_noise",)

    def grid(self):
        common = dict(
            dist_type=DISTS,
            normalize_d1=False,
            noise_level=NOISE_LEVELS,
            skip_train=True,
            data_seed=SEEDS,
        )
        return expand(
            _CAPTION_CAT_NOUN, {**common, "ablation": "none", "knn_k": K, "skip_hparam_optim": True}
        ) + expand(_CAPTION_CAT_NOUN, {**common, "ablation": "multimodal_baseline", "knn_k": 1})


@register
class LemonCaptionAblations(Experiment):
    """Ablations of LEMoN's terms on captioning data (category noise)."""

    name = "lemon_caption_ablations"
    aliases = ("multimodal_knn_caption_ablations",)

    def grid(self):
        return expand(
            dict(dataset=["mscoco", "mmimdb"], noise_type="cat", clip_model=HF),
            common=dict(
                dist_type=DISTS,
                normalize_d1=False,
                noise_level=0.4,
                ablation=ABLATIONS,
                knn_k=K,
                skip_train=True,
                data_seed=SEEDS,
            ),
        )


@register
class LemonCifarAblations(Experiment):
    """Ablations of LEMoN's terms on CIFAR-100N (real human noise)."""

    name = "lemon_cifar_ablations"
    aliases = ("multimodal_knn_cifar_ablations",)

    def grid(self):
        return expand(
            dict(dataset="cifar100", noise_type="real", clip_model=HF),
            common=dict(
                dist_type=DISTS,
                normalize_d1=False,
                noise_level=0.4,
                ablation=ABLATIONS,
                knn_k=K,
                skip_train=True,
                data_seed=SEEDS,
                use_discrete_for_text=True,
                custom_cifar_prompt=PROMPTS,
            ),
        )


@register
class LemonCaptionMimicClipScratch(Experiment):
    """MIMIC-CXR with CLIP models trained from scratch on the noisy data, and CheXzero."""

    name = "lemon_caption_mimic_clip_scratch"
    aliases = ("multimodal_knn_caption_mimic_clip_scratch",)

    def grid(self):
        return expand(
            [
                dict(
                    noise_type="random", clip_model=["mimic_clip_from_scratch_random", "chexzero"]
                ),
                dict(noise_type="cat", clip_model=["mimic_clip_from_scratch_cat", "chexzero"]),
            ],
            common=dict(
                dataset="mimiccxr_caption",
                dist_type=DISTS,
                normalize_d1=False,
                noise_level=0.4,
                ablation=["none", "multimodal_baseline"],
                knn_k=K,
                data_seed=SEEDS,
                skip_hparam_optim=True,
            ),
        )


_CAPTION_DATA = [
    dict(dataset=["mscoco", "mmimdb"], noise_type=["random", "cat", "noun"], clip_model=HF),
    dict(dataset="flickr30k", noise_type=["random", "noun"], clip_model=HF),
    dict(dataset="mimiccxr_caption", noise_type=["random", "cat"], clip_model=BIOMED),
]
_CLASSIFICATION_DATA = [
    dict(
        dataset=["cifar10", "cifar100"],
        noise_type=["real", "symmetric", "asymmetric"],
        clip_model=HF,
    ),
    dict(dataset=["stanford_cars", "mini_imagenet"], noise_type="real", clip_model=HF),
]
BASELINE_K = [2, 5, 10, 15, 20, 30, 50]
# scorers that ignore k run once; the others over BASELINE_K
_ANY_TASK_SCORERS = [
    dict(scorer="clip_sim"),
    dict(scorer=["dis_x", "dis_y", "div_x", "div_y"], knn_k=BASELINE_K),
    dict(scorer=["blip_itm", "blip_capfilt"]),
    # as the original, the generative models score val and test only (hours per 10k pairs)
    dict(scorer=["llava", "vdc"], skip_train=True),
]
_CLASSIFICATION_SCORERS = [
    dict(scorer="clip_logits", temperature=[1.0, 0.07, 0.015, 0.01]),
    dict(
        scorer=[
            "clipcleaner",
            "self_confidence",
            "normalized_margin",
            "confidence_weighted_entropy",
        ]
    ),
    dict(
        scorer=[
            "deep_knn",
            "simifeat",
            "knn_self_confidence",
            "knn_normalized_margin",
            "knn_confidence_weighted_entropy",
        ],
        knn_k=BASELINE_K,
    ),
    dict(scorer=["aum", "datamap"]),
]


@register
class BaselinesAll(Experiment):
    """Every baseline (training-free, model-based and training-based) on every dataset of lemon_all, for
    the comparison tables."""

    name = "baselines_all"

    def grid(self):
        caption = [{**data, **scorer} for data in _CAPTION_DATA for scorer in _ANY_TASK_SCORERS]
        classification = [
            {**data, **scorer, "custom_cifar_prompt": "A photo of a "}
            for data in _CLASSIFICATION_DATA
            for scorer in _ANY_TASK_SCORERS + _CLASSIFICATION_SCORERS
        ]
        return expand(caption + classification, common=dict(noise_level=0.4, data_seed=SEEDS))


# the original's CC3M recipe (ViT-B/32, 20 epochs, lr 1e-4, batch 128) in train_clip_from_scratch.py's flags
_CC3M_TRAINING = dict(
    dataset="cc3m", data_seed=0, model="ViT-B-32", epochs=20, lr=1e-4, batch_size=128
)


@register
class Cc3mClipScratch(Experiment):
    """Train a CLIP from scratch on all of CC3M (the unfiltered reference for the filtering study)."""

    name = "cc3m_clip_scratch"
    script = "train_clip_from_scratch"

    def grid(self):
        return expand(dict(**_CC3M_TRAINING))


@register
class LemonCc3mFilterUsingScratch(Experiment):
    """Score CC3M with the from-scratch CLIP of ``cc3m_clip_scratch`` (LEMoN and CLIP similarity) to filter it."""

    name = "lemon_cc3m_filter_using_scratch"

    def grid(self):
        return expand(
            dict(
                dataset="cc3m",
                dist_type="cosine",
                normalize_d1=False,
                real_dataset=True,
                clip_model=RunRef("cc3m_clip_scratch"),
                use_discrete_for_text=False,
                ablation=["none", "multimodal_baseline"],
                knn_k=30,
                data_seed=0,
            )
        )


@register
class Cc3mClipScratchFilteredFromScratch(Experiment):
    """Retrain the from-scratch CLIP on the 1M CC3M pairs each filter of the previous experiment keeps."""

    name = "cc3m_clip_scratch_filtered_from_scratch"
    script = "train_clip_from_scratch"

    def grid(self):
        scored_by = [
            RunRef("lemon_cc3m_filter_using_scratch", ablation=a)
            for a in ("multimodal_baseline", "none")
        ]
        return expand(dict(**_CC3M_TRAINING, keep_top_n=1_000_000, filter_scores=scored_by))


# ------------------------------------------------------------------------------------- downstream
#: the methods whose scores filter the data: LEMoN, CLIP similarity and every baseline of the task
_FILTER_SCORERS = {
    "any": [
        dict(scorer="lemon"),
        dict(scorer="clip_sim"),
        dict(scorer=["dis_x", "dis_y", "div_x", "div_y"]),
    ],
    "models": [dict(scorer=["blip_itm", "blip_capfilt", "llava", "vdc"])],
    "classification": [
        dict(
            scorer=[
                "clip_logits",
                "clipcleaner",
                "self_confidence",
                "normalized_margin",
                "confidence_weighted_entropy",
                "deep_knn",
                "simifeat",
                "knn_self_confidence",
                "knn_normalized_margin",
                "knn_confidence_weighted_entropy",
                "aum",
                "datamap",
            ]
        )
    ],
}
_CAPTION_TRAINING = dict(
    train_model="ViT-B-32", train_epochs=20, train_lr=1e-4, train_batch_size=128
)
_DOWNSTREAM_DATA = {
    "classification": [
        dict(dataset=["cifar10", "cifar100"], noise_type="real", clip_model=HF),
        dict(dataset=["stanford_cars", "mini_imagenet"], noise_type="real", clip_model=HF),
    ],
    "captioning": [
        dict(dataset="mscoco", noise_type="cat", clip_model=HF),
        dict(dataset="flickr30k", noise_type="noun", clip_model=HF),
    ],
}
#: the paper's k and distance for every scoring run (no selection across runs here)
_SCORING = dict(knn_k=30, dist_type="cosine", noise_level=0.4, data_seed=SEEDS)


def _scoring_runs(data: dict[str, list[dict]], kinds: dict[str, list[str]]) -> list[dict]:
    """Scoring runs of every method of ``kinds[task]`` on each data sub-grid of ``data[task]``."""
    grids = [
        {**sub, **scorer}
        for task, subs in data.items()
        for sub in subs
        for kind in kinds[task]
        for scorer in _FILTER_SCORERS[kind]
    ]
    return expand(grids, common=_SCORING)


def _downstream_runs(
    scores: str, runs: list[dict], filters: list[dict], training: dict | None = None
) -> list[dict]:
    """Per scoring run of experiment ``scores``, one downstream job per filter; per data configuration
    also a random 40% drop and no filter (both read the CLIP-similarity run, whose scores they ignore).
    ``training``: dataset -> training flags of the downstream model."""
    jobs = []
    for run in runs:
        extra = (training or {}).get(run["dataset"], {})
        ref = RunRef(scores, **run)
        jobs += [dict(scores=ref, **rule, **extra) for rule in filters]
        if run["scorer"] == "clip_sim":
            jobs += [
                dict(scores=ref, filter="random", fraction=0.4, **extra),
                dict(scores=ref, filter="none", **extra),
            ]
    return jobs


@register
class DownstreamScores(Experiment):
    """The scoring runs whose scores filter the train split in ``downstream``: LEMoN, CLIP similarity and
    every baseline of the task (model-based ones included) on the paper's downstream datasets."""

    name = "downstream_scores"

    def grid(self):
        kinds = {
            "classification": ["any", "classification", "models"],
            "captioning": ["any", "models"],
        }
        return _scoring_runs(_DOWNSTREAM_DATA, kinds)


@register
class Downstream(Experiment):
    """Downstream models trained on the data each method filtered (drop the top 40% = the noise level, or
    what it flagged), against a random 40% drop and no filter: classifiers (test accuracy) and CLIPs
    trained from scratch (test retrieval recall); ``lemon.tables.aggregate`` prints the table."""

    name = "downstream"
    script = "lemon.downstream"

    def grid(self):
        filters = [dict(filter="drop_top", fraction=0.4), dict(filter="flagged")]
        training = {"mscoco": _CAPTION_TRAINING, "flickr30k": _CAPTION_TRAINING}
        return _downstream_runs("downstream_scores", DownstreamScores().grid(), filters, training)


_DEMO_DATA = {"captioning": [dict(dataset="demo")], "classification": [dict(dataset="synthetic")]}


@register
class DownstreamDemoScores(Experiment):
    """Scoring runs of ``downstream_demo``, offline: the demo (captioning) and --dataset synthetic
    (classification) with every method that needs no downloaded weights."""

    name = "downstream_demo_scores"

    def grid(self):
        kinds = {"classification": ["any", "classification"], "captioning": ["any"]}
        return _scoring_runs(_DEMO_DATA, kinds)


@register
class DownstreamDemo(Experiment):
    """``downstream`` on the offline data (docs/downstream.md's tables): a CLIP trained from scratch
    (lemon-demo, the demo_clip recipe) on the demo pairs each method keeps, and a classifier on the
    synthetic embeddings."""

    name = "downstream_demo"
    script = "lemon.downstream"

    def grid(self):
        runs = DownstreamDemoScores().grid()
        return _downstream_runs(
            "downstream_demo_scores", runs, [dict(filter="drop_top", fraction=0.4)]
        )


_GRID_96 = dict(dist_type=DISTS, ablation=["none", "multimodal_baseline"], knn_k=K, data_seed=SEEDS)


@register
class Cc3mLemonFix(Experiment):
    """LEMoN_FIX on the whole of a webdataset corpus laid out as ``cc3m`` (millions of pairs, one job):
    embeddings from ``python -m lemon.embed`` shards, search and scores streamed, scores.parquet written."""

    name = "cc3m_lemon_fix"

    def grid(self):
        return expand(
            dict(
                dataset="cc3m",
                real_dataset=True,
                noise_level=0,
                clip_model=HF,
                lemon_fix=True,
                scores_parquet="always",
            )
        )


@register
class Smoke(Experiment):
    """The 96-run shape of one dataset of lemon_all (k x distance x ablation x seed) on the offline demo
    dataset (real rendered images, embedded once through the cache; benchmarks/bench_sweep.py times it)."""

    name = "smoke"

    def grid(self):
        return expand(dict(dataset="demo"), common=_GRID_96)


@register
class SmokeSynthetic(Experiment):
    """The same 96 runs on tiny synthetic embeddings (no model, seconds per run)."""

    name = "smoke_synthetic"

    def grid(self):
        return expand(dict(dataset="synthetic", n_synthetic=400), common=_GRID_96)
