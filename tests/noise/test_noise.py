"""Noise injectors: exact counts, never onto self, determinism per seed, compatibility errors."""

from __future__ import annotations

import math
import sys
import types
from fractions import Fraction

import numpy as np
import pytest
from fake_data import NOUNS, noun_tagger

from lemon.core.errors import (
    DatasetNotFoundError,
    LemonError,
    MissingDependencyError,
    UnknownNameError,
)
from lemon.data.base import DatasetSplits, PairSplit
from lemon.noise import NOISES, apply_noise, n_noisy, supported_noises
from lemon.noise.caption import random_swap, shared_key_swap

N_CLASSES = 10


def _captions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(
        [
            f"a {NOUNS[a]} and a {NOUNS[b]} number {i}"
            for i, (a, b) in enumerate(rng.integers(0, len(NOUNS), (n, 2)))
        ],
        dtype=object,
    )


def captioning(sizes=(200, 50, 50), name: str = "mscoco", categories: bool = True) -> DatasetSplits:
    splits = {}
    for k, (s, n) in enumerate(zip(("train", "val", "test"), sizes)):
        texts = _captions(n, k)
        cats = [(NOUNS[i % 4], "thing") if i % 5 else () for i in range(n)] if categories else None
        splits[s] = PairSplit(s, "captioning", None, texts, texts.copy(), categories=cats)
    return DatasetSplits(name, "captioning", splits)


def classification(sizes=(4000, 500, 500), name: str = "cifar10") -> DatasetSplits:
    names = [f"c{i}" for i in range(N_CLASSES)]
    splits = {}
    for k, (s, n) in enumerate(zip(("train", "val", "test"), sizes)):
        y = np.random.default_rng(k).integers(0, N_CLASSES, n)
        splits[s] = PairSplit(s, "classification", None, y, y.copy(), class_names=names)
    return DatasetSplits(name, "classification", splits, class_names=names)


# ------------------------------------------------------------------------------------------ caption noise
@pytest.mark.parametrize("level", [0.0, 0.1, 0.29, 0.4, 0.5, 0.99])
def test_random_swaps_exactly_floor_level_n_never_onto_self(level):
    noisy = apply_noise(captioning(), "random", level, data_seed=3)
    for part in noisy.splits.values():
        expected = math.floor(Fraction(str(level)) * len(part))
        assert part.n_swapped == expected
        assert part.is_mislabel.sum() == expected  # captions are unique, so every swap is an error
        pool = set(part.clean)
        assert all(t in pool for t in part.observed)  # swapped-in captions come from the same split


def test_random_swap_indices_never_self_and_distinct():
    rng = np.random.default_rng(0)
    for n, k in ((2, 1), (3, 3), (1000, 999), (50, 0)):
        src, tgt = random_swap(n, k, rng)
        assert len(src) == k == len(set(src.tolist()))
        assert not (src == tgt).any() and (tgt >= 0).all() and (tgt < n).all()


def test_random_swap_targets_are_uniform_over_others():
    src, tgt = random_swap(5, 5, np.random.default_rng(1))
    counts = np.zeros((5, 5))
    rng = np.random.default_rng(2)
    for _ in range(4000):
        src, tgt = random_swap(5, 5, rng)
        counts[src, tgt] += 1
    assert np.diag(counts).sum() == 0
    off = counts[~np.eye(5, dtype=bool)]
    assert off.min() > 0.8 * off.mean() and off.max() < 1.2 * off.mean()


def test_noise_is_deterministic_per_seed_and_split():
    a = apply_noise(captioning(), "random", 0.4, data_seed=7)
    b = apply_noise(captioning(), "random", 0.4, data_seed=7)
    c = apply_noise(captioning(), "random", 0.4, data_seed=8)
    for s in ("train", "val", "test"):
        assert (a[s].observed == b[s].observed).all()
    assert any((a[s].observed != c[s].observed).any() for s in ("train", "val", "test"))
    # splits draw from their own generators: val and test (same size) are not noised alike
    same = apply_noise(captioning((50, 50, 50)), "random", 0.4, data_seed=7)
    assert not np.array_equal(same["val"].is_mislabel, same["test"].is_mislabel)


def test_swap_onto_identical_caption_is_not_a_mislabel():
    texts = np.asarray(["same caption"] * 10 + [f"unique {i}" for i in range(10)], dtype=object)
    splits = DatasetSplits(
        "mscoco",
        "captioning",
        {
            s: PairSplit(s, "captioning", None, texts, texts.copy())
            for s in ("train", "val", "test")
        },
    )
    noisy = apply_noise(splits, "random", 0.5, data_seed=0)
    for part in noisy.splits.values():
        assert part.n_swapped == 10
        changed = part.observed != part.clean
        assert (part.is_mislabel == changed).all() and part.is_mislabel.sum() <= 10


@pytest.mark.parametrize("noise", ["cat", "noun"])
def test_shared_key_noise_matches_a_shared_noun_or_category(noise):
    base = captioning()
    noisy = apply_noise(
        base, noise, 0.5, data_seed=1, **({"tagger": noun_tagger} if noise == "noun" else {})
    )
    for part in noisy.splits.values():
        assert part.n_swapped == math.floor(0.5 * len(part))
        lookup = {t: i for i, t in enumerate(part.clean)}
        changed = np.flatnonzero(part.is_mislabel)
        assert len(changed) == part.n_swapped  # unique captions: every swap shows
        for i in changed:
            j = lookup[part.observed[i]]
            assert j != i
            if noise == "cat":
                assert set(part.categories[i]) & set(part.categories[j])
                assert part.categories[i]  # samples with no category are never chosen
            else:
                assert set(noun_tagger([part.clean[i]])[0]) & set(noun_tagger([part.clean[j]])[0])


def test_shared_key_swap_never_picks_keyless_or_unshared_samples():
    keys = [["a"], [], ["a", "a"], ["b"], ["a", "c"], [], ["zz"]]  # 'b', 'c', 'zz' are held once
    rng = np.random.default_rng(0)
    for _ in range(200):
        src, tgt = shared_key_swap(keys, 3, rng)
        assert set(src.tolist()) == {0, 2, 4} and set(tgt.tolist()) <= {0, 2, 4}
        assert not (src == tgt).any()
    with pytest.raises(
        LemonError, match=r"asks for 4 swaps but only 3 of the 7 samples share a key"
    ):
        shared_key_swap(keys, 4, rng)


def test_cat_noise_too_high_level_is_a_clear_error():
    splits = captioning((20, 20, 20))  # one sample in five has no category
    with pytest.raises(
        LemonError,
        match=r"'cat' noise at level 0.9 on split 'train' asks for 18 swaps but "
        r"only 16 of the 20 samples share a category.*at most 0.800",
    ):
        apply_noise(splits, "cat", 0.9, data_seed=0)


def test_cat_without_categories_names_the_missing_file():
    splits = captioning(categories=False)
    splits[
        "train"
    ].categories_missing = "'cat' noise needs the COCO instances annotations: expected X."
    with pytest.raises(LemonError, match="needs the COCO instances annotations"):
        apply_noise(splits, "cat", 0.4, data_seed=0)


def test_noun_noise_without_spacy_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy -> ImportError
    with pytest.raises(
        MissingDependencyError,
        match=r"pip install spacy && python -m spacy download "
        r"en_core_web_sm",
    ):
        apply_noise(captioning(), "noun", 0.4, data_seed=0)


def test_noun_noise_without_the_english_model_gives_the_download_command(monkeypatch):
    def load(name, **kwargs):
        raise OSError(f"[E050] Can't find model '{name}'.")

    monkeypatch.setitem(sys.modules, "spacy", types.SimpleNamespace(load=load))
    with pytest.raises(
        MissingDependencyError,
        match=r"^'noun' noise needs spaCy's English model "
        r"'en_core_web_sm', which is not installed: "
        r"python -m spacy download en_core_web_sm$",
    ):
        apply_noise(captioning(), "noun", 0.4, data_seed=0)


def test_noun_noise_uses_spacy_pos_tags_when_available(monkeypatch):
    class Token:
        def __init__(self, text):
            self.text, self.pos_ = text, "NOUN" if text.lower() in NOUNS else "X"

    class NLP:
        def pipe(self, texts, batch_size):
            return ([Token(w) for w in t.split()] for t in texts)

    monkeypatch.setitem(
        sys.modules, "spacy", types.SimpleNamespace(load=lambda name, disable: NLP())
    )
    via_spacy = apply_noise(captioning(), "noun", 0.4, data_seed=2)
    via_fake = apply_noise(captioning(), "noun", 0.4, data_seed=2, tagger=noun_tagger)
    assert all(
        (via_spacy[s].observed == via_fake[s].observed).all() for s in ("train", "val", "test")
    )


# ------------------------------------------------------------------------------------------ label noise
def test_symmetric_flips_with_probability_level_to_other_classes():
    noisy = apply_noise(classification(), "symmetric", 0.4, data_seed=0)
    part = noisy["train"]
    n, flipped = len(part), int(part.is_mislabel.sum())
    assert abs(flipped - 0.4 * n) < 5 * math.sqrt(n * 0.4 * 0.6)
    shift = (part.observed - part.clean)[part.is_mislabel] % N_CLASSES
    counts = np.bincount(shift, minlength=N_CLASSES)
    assert counts[0] == 0  # never "flips" to itself
    assert counts[1:].min() > 0.6 * counts[1:].mean()  # uniform over the other classes


def test_asymmetric_is_a_pair_flip():
    noisy = apply_noise(classification(), "asymmetric", 0.3, data_seed=0)
    for part in noisy.splits.values():
        moved = part.is_mislabel
        assert (part.observed[moved] == (part.clean[moved] + 1) % N_CLASSES).all()
        assert abs(moved.mean() - 0.3) < 0.1


def test_pairflip_alias_and_level_zero_is_identity():
    splits = classification()
    noisy = apply_noise(splits, "pairflip", 0.0, data_seed=0)
    assert all(not p.is_mislabel.any() for p in noisy.splits.values())
    assert noisy["train"].noise == "asymmetric"
    assert splits["train"].noise is None  # inputs are never modified


def test_real_noise_takes_human_labels_from_meta():
    splits = classification((40, 10, 10))
    for part in splits.splits.values():
        part.real_observed = (part.clean + 2) % N_CLASSES
    noisy = apply_noise(splits, "real", 0.4, data_seed=0)  # the level is ignored for real noise
    for part in noisy.splits.values():
        assert part.is_mislabel.all() and part.noise_level is None


def test_real_noise_without_cifar_n_file_names_it():
    splits = classification((40, 10, 10))
    for part in splits.splits.values():
        part.real_missing = "CIFAR-N labels for 'cifar10' not found: expected /x/CIFAR-10_human.pt."
    with pytest.raises(DatasetNotFoundError, match=r"expected /x/CIFAR-10_human.pt"):
        apply_noise(splits, "real", 0.0, data_seed=0)


def test_real_noise_needs_ground_truth():
    splits = captioning(name="cc3m")
    splits.has_ground_truth = False
    with pytest.raises(
        LemonError, match=r"Dataset 'cc3m' has no ground-truth labels.*--real_dataset"
    ):
        apply_noise(splits, "real", 0.0, data_seed=0)


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("level", [1.0, 1.2, -0.1, float("nan")])
def test_level_outside_unit_interval_is_rejected(level):
    with pytest.raises(LemonError, match=r"noise_level must be in \[0, 1\), got"):
        apply_noise(captioning(), "random", level, data_seed=0)


def test_unknown_noise_lists_valid_ones_with_suggestion():
    with pytest.raises(
        UnknownNameError,
        match=r"Unknown noise type 'nouns'. Available: asymmetric, cat, noun, "
        r"random, real, symmetric. Did you mean 'noun'\?",
    ):
        apply_noise(captioning(), "nouns", 0.4, data_seed=0)


def test_incompatible_noise_lists_the_dataset_types():
    with pytest.raises(
        LemonError,
        match=r"^Noise type 'noun' is not supported for dataset 'cifar10'; "
        r"supported: real, symmetric, asymmetric\.$",
    ):
        apply_noise(classification(), "noun", 0.4, data_seed=0)
    with pytest.raises(
        LemonError,
        match=r"Noise type 'symmetric' is not supported for dataset 'mscoco'; "
        r"supported: random, noun, cat\.",
    ):
        apply_noise(captioning(), "symmetric", 0.4, data_seed=0)


def test_unregistered_dataset_supports_every_noise_of_its_task():
    assert supported_noises(captioning(name="my_own")) == ["cat", "noun", "random", "real"]


def test_negative_data_seed_is_rejected():
    with pytest.raises(LemonError, match="data_seed must be >= 0, got -1"):
        apply_noise(captioning(), "random", 0.4, data_seed=-1)


def test_n_noisy_is_the_exact_floor_of_the_typed_level():
    assert n_noisy(0.29, 100) == 29 and int(0.29 * 100) == 28  # the float product would lose one
    assert n_noisy(0.4, 5) == 2 and n_noisy(0.0, 10) == 0 and n_noisy(0.999, 1000) == 999


def test_every_registered_noise_declares_a_task():
    for name in NOISES.names():
        assert NOISES.get(name).task in ("classification", "captioning", "any")


# ------------------------------------------------------------------------------------------ the run's noise check
def _noise_reaching_embedding(tmp_path, monkeypatch, *noise_flags: str):
    """``load_features`` of a fake cifar10 copy from command-line flags; returns the noisy splits it embeds."""
    from fake_data import write_fake

    import lemon.embed
    from lemon.run.config import config_from_args
    from lemon.run.load import load_features

    if not (tmp_path / "cifar10").is_dir():
        write_fake("cifar10", tmp_path)
    seen = {}

    class Embedded(Exception):
        pass

    def embed_with(model, splits, *args, **kwargs):
        seen["splits"] = splits
        raise Embedded

    import lemon.embed.folds

    # no model weights here: the model is opened (first, to fail fast offline) as a stand-in
    monkeypatch.setattr(lemon.embed.folds, "open_model", lambda *args, **kwargs: object())
    monkeypatch.setattr(lemon.embed.folds, "embed_with", embed_with)
    cfg = config_from_args(
        [
            "--output_dir",
            str(tmp_path / "out"),
            "--dataset",
            "cifar10",
            "--data_dir",
            str(tmp_path),
            *noise_flags,
        ]
    )
    with pytest.raises(Embedded):
        load_features(cfg, k=5, device="cpu")
    return seen["splits"]


def test_run_accepts_a_noise_alias_and_applies_its_canonical_noise(tmp_path, monkeypatch):
    noisy = _noise_reaching_embedding(
        tmp_path, monkeypatch, "--noise_type", "pairflip", "--noise_level", "0.5"
    )
    canonical = _noise_reaching_embedding(
        tmp_path, monkeypatch, "--noise_type", "asymmetric", "--noise_level", "0.5"
    )
    for s, part in noisy.splits.items():
        assert part.noise == "asymmetric" and part.is_mislabel.any()
        moved = part.observed != part.clean
        assert (part.observed[moved] == (part.clean[moved] + 1) % len(part.class_names)).all()
        assert np.array_equal(part.observed, canonical[s].observed)  # the alias is the same noise


def test_run_noise_check_still_refuses_unknown_and_unsupported_types(tmp_path, monkeypatch):
    with pytest.raises(
        UnknownNameError, match=r"Unknown noise type 'pairflp'.*Did you mean 'pairflip'\?"
    ):
        _noise_reaching_embedding(tmp_path, monkeypatch, "--noise_type", "pairflp")
    with pytest.raises(
        LemonError,
        match=r"^Noise type 'noun' is not supported for dataset 'cifar10'; supported: "
        r"real, symmetric, asymmetric\.$",
    ):
        _noise_reaching_embedding(tmp_path, monkeypatch, "--noise_type", "noun")
