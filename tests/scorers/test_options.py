"""Each scorer owns its options: a typed dataclass of its flags, registered with it, that run_lemon turns
into flags (same names and defaults as before), checks, records in args.json and hands back typed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types
from pathlib import Path

import pytest

import run_lemon
from experiments import EXPERIMENTS
from lemon.core.errors import LemonError
from lemon.core.registry import Registry
from lemon.run.config import RunConfig, build_parser, config_from_args, execution_fields
from lemon.run.stages import scorer_options
from lemon.scorers import SCORERS
from lemon.scorers.base import Scorer, ScorerOptions, option
from lemon.scorers.blip import BlipCapFiltOptions, BlipItmOptions
from lemon.scorers.dynamics import DynamicsOptions
from lemon.scorers.flags import all_flags, collect
from lemon.scorers.lemon import LemonOptions
from lemon.scorers.vdc import VdcOptions
from lemon.sweep import build_jobs

#: every scorer flag with its default and the scorers reading it, as run_lemon had them before the
#: options moved into the scorers (written out by hand from the former RunConfig fields)
FORMER_FLAGS = {
    "blip_model": ("Salesforce/blip-itm-base-coco", ("blip_capfilt", "blip_itm")),
    "blip_mode": ("itm", ("blip_itm",)),
    "capfilt_mode": ("filter", ("blip_capfilt",)),
    "blip_captioner": ("Salesforce/blip-image-captioning-base", ("blip_capfilt",)),
    "llava_model": ("llava-hf/llava-v1.6-vicuna-13b-hf", ("llava",)),
    "llava_answer": ("yes_no", ("llava",)),
    "vdc_llm": ("meta-llama/Llama-3.1-8B-Instruct", ("vdc",)),
    "vdc_vqa": ("Salesforce/instructblip-vicuna-7b", ("vdc",)),
    "vdc_questions": (6, ("vdc",)),
    "vdc_judge": ("logits", ("vdc",)),
    "vdc_question_tokens": (512, ("vdc",)),
    "vdc_answer_tokens": (128, ("vdc",)),
    "model_batch_size": (None, ("blip_capfilt", "blip_itm", "llava", "vdc")),
    "dynamics_epochs": (20, ("aum", "datamap")),
    "dynamics_lr": (0.5, ("aum", "datamap")),
    "dynamics_batch_size": (256, ("aum", "datamap")),
}


def test_the_scorer_flags_keep_their_names_defaults_and_readers():
    flags = all_flags()
    assert {n: (f.default, f.scorers) for n, f in flags.items()} == FORMER_FLAGS
    parser = build_parser()
    for name, (default, _) in FORMER_FLAGS.items():
        assert parser.get_default(name) == default, name


def test_run_config_lists_no_baseline_option():
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert not fields & set(FORMER_FLAGS)
    assert not {f.name for f in dataclasses.fields(ScorerOptions)} & set(FORMER_FLAGS)


def test_help_groups_each_flag_under_the_scorers_reading_it():
    parser = build_parser()
    titles = {
        action.dest: group.title
        for group in parser._action_groups
        for action in group._group_actions
    }
    assert titles["blip_mode"] == "options of --scorer blip_itm"
    assert titles["blip_model"] == "options of --scorer blip_capfilt, blip_itm"
    assert titles["dynamics_lr"] == "options of --scorer aum, datamap"
    assert titles["model_batch_size"] == "options of --scorer blip_capfilt, blip_itm, llava, vdc"
    assert titles["knn_k"].startswith("method")


def test_flags_reach_the_scorer_typed():
    cfg = config_from_args(
        [
            "--output_dir",
            "x",
            "--scorer",
            "blip_itm",
            "--blip_mode",
            "itc",
            "--model_batch_size",
            "4",
        ]
    )
    options = scorer_options(cfg, k=7)
    assert type(options) is BlipItmOptions
    assert (options.blip_mode, options.model_batch_size, options.k) == ("itc", 4, 7)
    assert options.blip_model == "Salesforce/blip-itm-base-coco"
    scorer = SCORERS.get("blip_itm")(options)
    assert scorer.batch_size == 4 and scorer.columns == ("score", "itc_cosine")
    lemon = scorer_options(config_from_args(["--output_dir", "x", "--ablation", "beta"]), k=3)
    assert type(lemon) is LemonOptions and lemon.ablation == "beta"


def test_args_json_records_every_scorer_flag(tmp_path):
    cfg = config_from_args(["--output_dir", "x", "--scorer", "aum", "--dynamics_epochs", "3"])
    values = cfg.to_dict()
    assert values["dynamics_epochs"] == 3 and values["vdc_questions"] == 6
    assert "scorer_flags" not in values
    assert RunConfig.from_flags(values) == cfg  # args.json -> the same run (lemon.run.load)
    assert cfg.replace(dynamics_epochs=20).scorer_flags == {}  # back to the default
    assert "model_batch_size" in execution_fields() and "blip_mode" not in execution_fields()


def test_a_flag_of_another_scorer_is_refused_in_one_line(tmp_path, capsys):
    code = run_lemon.main(["--output_dir", str(tmp_path / "o"), "--blip_mode", "itc"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err == (
        "error: --blip_mode itc is an option of --scorer blip_itm, and --scorer lemon would ignore "
        "it; drop it or pass --scorer blip_itm."
    )
    # its default is no setting: accepted with any scorer, as before
    assert config_from_args(["--output_dir", "x", "--blip_mode", "itm"]).scorer_flags == {}
    with pytest.raises(
        LemonError, match="--model_batch_size 8 is an option of --scorer blip_capfilt"
    ):
        config_from_args(["--output_dir", "x", "--scorer", "aum", "--model_batch_size", "8"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--scorer", "vdc", "--vdc_questions", "-1"], "vdc_questions must be >= 0, got -1."),
        (["--scorer", "vdc", "--vdc_answer_tokens", "0"], "vdc_answer_tokens must be >= 1, got 0."),
        (["--scorer", "aum", "--dynamics_lr", "0"], "dynamics_lr must be > 0, got 0.0."),
        (["--scorer", "llava", "--model_batch_size", "0"], "model_batch_size must be >= 1, got 0."),
        (
            ["--scorer", "llava", "--llava_answer", "maybe"],
            "Unknown llava_answer 'maybe'. Available: yes_no, original.",
        ),
        (["--search_budget", "0"], "search_budget must be > 0, got 0.0."),
    ],
)
def test_bad_option_values_are_refused_by_the_scorer(argv, message):
    with pytest.raises(LemonError) as info:
        config_from_args(["--output_dir", "x", *argv], raise_errors=True)
    assert str(info.value) == message


def test_options_check_themselves_in_the_python_api_too():
    with pytest.raises(LemonError, match=r"^dynamics_epochs must be >= 1, got 0\.$"):
        DynamicsOptions(dynamics_epochs=0)
    with pytest.raises(LemonError, match=r"^Unknown capfilt_mode 'gap'"):
        BlipCapFiltOptions(capfilt_mode="gap")
    with pytest.raises(LemonError, match=r"^Unknown ablation 'bta'"):
        LemonOptions(ablation="bta")
    # shared options given to a scorer with its own: they are kept, its own take their defaults
    scorer = SCORERS.get("vdc")(ScorerOptions(k=4, seed=3))
    assert type(scorer.options) is VdcOptions
    assert (scorer.options.k, scorer.options.seed, scorer.options.vdc_questions) == (4, 3, 6)


def test_unknown_flag_names_are_refused():
    with pytest.raises(LemonError, match="Unknown run_lemon flag\\(s\\) blip_moed; see"):
        RunConfig.from_flags({"output_dir": "x", "blip_moed": "itc"})


def test_an_option_declared_twice_fails_at_once():
    registry = Registry("scorer")

    @dataclasses.dataclass(frozen=True)
    class A(ScorerOptions):
        width: int = option(1, "a width")

    @dataclasses.dataclass(frozen=True)
    class B(ScorerOptions):
        width: int = option(1, "another width")

    @dataclasses.dataclass(frozen=True)
    class C(A):
        depth: int = option(2, "a depth")

    registry.register("a")(type("ScorerA", (Scorer,), {"Options": A}))
    registry.register("c")(type("ScorerC", (Scorer,), {"Options": C}))
    shared = collect(registry)
    assert {n: (f.owner, f.scorers) for n, f in shared.items()} == {
        "width": (A, ("a", "c")),
        "depth": (C, ("c",)),
    }
    registry.register("b")(type("ScorerB", (Scorer,), {"Options": B}))
    with pytest.raises(TypeError, match="'width' is declared twice"):
        collect(registry)


# run folders of existing grids, hashed before the options moved (md5 of the sweep args only): a moved
# flag must orphan no finished run. Recorded with build_jobs on the commit before this change.
HASHES = {
    "baselines_all": (2862, "a01a9d40fb2c6296811237a6ae79d7df"),
    "lemon_all": (2496, "99d87db41b9f5aed6ba0a7f3c6e83597"),
    "smoke": (96, "b5d586e53c4ae2e7d0a6304b816fddab"),
    "vary_val_set": (2304, "8020da71196db76926d8fb1dae2423c9"),
}


@pytest.mark.parametrize("name", sorted(HASHES))
def test_run_hashes_of_existing_grids_are_unchanged(name, tmp_path):
    jobs = build_jobs(EXPERIMENTS.get(name)(), tmp_path, EXPERIMENTS)
    digest = hashlib.md5("\n".join(job.hash for job in jobs).encode()).hexdigest()
    assert (len(jobs), digest) == HASHES[name]


def test_one_job_hash_by_hand(tmp_path):
    jobs = build_jobs(EXPERIMENTS.get("baselines_all")(), tmp_path, EXPERIMENTS)
    args = {
        "noise_level": 0.4,
        "data_seed": 0,
        "dataset": "mscoco",
        "noise_type": "random",
        "clip_model": "huggingface_clip",
        "scorer": "clip_sim",
    }
    expected = hashlib.md5(json.dumps(args, sort_keys=True).encode()).hexdigest()
    assert (
        jobs[0].hash_args == args and jobs[0].hash == expected == "059af4494bf1bf8b82d0a9db63c596a1"
    )


def test_every_baselines_all_job_passes_its_checks(tmp_path):
    """The baseline grid's jobs are valid under the new rule (no foreign scorer flag)."""
    for job in build_jobs(EXPERIMENTS.get("baselines_all")(), tmp_path, EXPERIMENTS)[::7]:
        cfg = config_from_args(job.argv(), raise_errors=True)
        assert cfg.scorer == job.args["scorer"]


def test_the_scorer_added_in_the_docs_is_one_module(monkeypatch):
    """docs/baselines.md's example module, run as written against a fresh registry: its option becomes
    a flag of that scorer alone, its Options checks the value, and it scores as the formula says
    (recomputed here with a per-row loop over a brute-force neighbour search)."""
    import numpy as np

    import lemon.scorers.registry
    from lemon.data.embeddings import features_from_arrays
    from lemon.data.synthetic import make_synthetic_embeddings
    from lemon.scorers.base import ScoringContext

    page = (Path(__file__).resolve().parents[2] / "docs" / "baselines.md").read_text("utf-8")
    source = page.split("## Adding a scorer")[1].split("```python\n")[1].split("```")[0]
    fresh = Registry("scorer")
    monkeypatch.setattr(lemon.scorers.registry, "SCORERS", fresh)
    module = types.ModuleType("nn_text_gap")
    monkeypatch.setitem(sys.modules, "nn_text_gap", module)
    exec(compile(source, "docs/baselines.md", "exec"), module.__dict__)
    flags = collect(fresh)
    assert list(flags) == ["gap_reduce"] and flags["gap_reduce"].scorers == ("nn_text_gap",)
    cls = fresh.get("nn_text_gap")
    with pytest.raises(LemonError, match=r"^Unknown gap_reduce 'min'\. Available: mean, max\.$"):
        cls.Options(gap_reduce="min")
    features = features_from_arrays(make_synthetic_embeddings(200))
    ctx = ScoringContext(features)
    out = cls(cls.Options(k=3, gap_reduce="max")).score(ctx, "test", {})["score"]
    q, ref = features.splits["test"], features.reference
    expected = []
    for i in range(len(q)):
        nearest = np.argsort(-(ref.img @ q.img[i]), kind="stable")[:3]
        expected.append(max(1.0 - float(q.txt[i] @ ref.txt[j]) for j in nearest))
    np.testing.assert_allclose(out, expected, atol=1e-5)
