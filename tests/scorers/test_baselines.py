"""Baseline scorers: each against a hand-computed example or a naive per-sample loop written here,
cleanlab-style scores against cleanlab.rank itself, determinism, refusal messages, and a pipeline smoke
test for every registered scorer (so a newly registered one is covered automatically)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from lemon.core.errors import LemonError
from lemon.data.features import Features, SplitFeatures
from lemon.run.config import RunConfig
from lemon.run.pipeline import run
from lemon.scorers import SCORERS
from lemon.scorers.base import ScorerOptions, ScoringContext
from lemon.scorers.lemon import LemonOptions

SPLIT_NAMES = ("train", "val", "test")
CLASSIFICATION_ONLY = [n for n in SCORERS.names() if "captioning" not in SCORERS.get(n).tasks]
ANY_TASK = [n for n in SCORERS.names() if "captioning" in SCORERS.get(n).tasks]
#: scorers that work on embeddings alone (the model-based ones need images: test_model_scorers.py)
ON_EMBEDDINGS = [n for n in SCORERS.names() if not SCORERS.get(n).needs_images]


# ---------------------------------------------------------------------------------------------- helpers
def tiny_features(
    seed: int = 0,
    sizes=(14, 7, 7),
    d: int = 4,
    c: int = 3,
    task: str = "classification",
    prompts: bool = True,
    pred_probs: dict | None = None,
) -> Features:
    """Random unit vectors; every class present in train; the first third of each split mislabelled."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in zip(SPLIT_NAMES, sizes):
        clean = np.arange(n) % c
        observed = np.where(np.arange(n) < n // 3, (clean + 1) % c, clean)
        if task == "classification":
            texts = np.array([f"a photo of a c{o}" for o in observed], dtype=object)
        else:
            clean = np.array([f"caption {name} {i}" for i in range(n)], dtype=object)
            observed = np.roll(clean, 1) if n > 1 else clean
            observed[n // 3 :] = clean[n // 3 :]
            texts = observed
        probs = None if pred_probs is None else pred_probs.get(name)
        splits[name] = SplitFeatures(
            name,
            rng.normal(size=(n, d)),
            rng.normal(size=(n, d)),
            texts,
            observed,
            clean,
            observed != clean,
            probs,
        )
    prompt_emb = rng.normal(size=(c, d)) if (prompts and task == "classification") else None
    names = [f"c{i}" for i in range(c)] if task == "classification" else None
    return Features(task, splits, prompt_emb, names)


def context(features: Features, knn_k: int = 3, **options) -> ScoringContext:
    """A scoring context carrying (for these tests) the scorer options to build scorers with."""
    ctx = ScoringContext(features)
    ctx.options = LemonOptions(k=knn_k, **options)  # each scorer keeps the fields it reads
    return ctx


def run_scorer(name: str, ctx: ScoringContext, split: str = "test") -> dict[str, np.ndarray]:
    scorer = SCORERS.get(name)(ctx.options)
    scorer.check(ctx.features)
    return scorer.score(ctx, split, scorer.fit(ctx))


def dist(a: np.ndarray, b: np.ndarray, dist_type: str) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(1 - a @ b) if dist_type == "cosine" else float((a - b) @ (a - b))


def naive_knn(features: Features, split: str, space: str, k: int) -> list[list[int]]:
    """Per query, the k most similar reference rows by a Python sort, own reference row skipped."""
    q, ref, rows = features.splits[split], features.reference, features.self_rows(split)
    out = []
    for i in range(len(q)):
        sims = {
            j: float(getattr(q, space)[i] @ getattr(ref, space)[j])
            for j in range(len(ref))
            if rows is None or j != rows[i]
        }
        out.append(sorted(sims, key=lambda j: -sims[j])[:k])
    return out


# ---------------------------------------------------------------------------------------------- hand-computed
def hand_features(
    img: list,
    txt: list,
    observed: list,
    ref_img: list,
    ref_txt: list,
    ref_obs: list,
    prompts: list | None = None,
) -> Features:
    """Reference = train; the query pairs are val and test."""

    def split(name, i, t, o):
        o = np.asarray(o)
        return SplitFeatures(
            name,
            np.asarray(i, float),
            np.asarray(t, float),
            np.array([str(x) for x in o], dtype=object),
            o,
            o,
            np.zeros(len(o), bool),
        )

    splits = {
        "train": split("train", ref_img, ref_txt, ref_obs),
        "val": split("val", img, txt, observed),
        "test": split("test", img, txt, observed),
    }
    return Features(
        "classification",
        splits,
        None if prompts is None else np.asarray(prompts, float),
        None if prompts is None else [f"c{i}" for i in range(len(prompts))],
    )


def deg(angles) -> list:
    return [[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in angles]


@pytest.mark.parametrize("dist_type, expected", [("cosine", [1.0, 0.0]), ("euclidean", [2.0, 0.0])])
def test_clip_sim_hand_computed(dist_type, expected):
    f = hand_features(
        [[1, 0], [0, 1]], [[0, 1], [0, 1]], [0, 0], deg([0, 10, 20]), deg([0, 10, 20]), [0, 0, 0]
    )
    out = run_scorer("clip_sim", context(f, knn_k=1, dist_type=dist_type))
    np.testing.assert_allclose(out["score"], expected, atol=1e-6)


def test_clip_logits_hand_computed():
    # image along class 0's prompt: p(class 0) = e / (e + 1) at T = 1, e^2 / (e^2 + 1) at T = 0.5
    f = hand_features(
        [[1, 0], [1, 0]],
        [[0, 1], [1, 0]],
        [1, 0],
        deg([0, 10, 20]),
        deg([0, 10, 20]),
        [0, 0, 0],
        prompts=[[1, 0], [0, 1]],
    )
    e = np.e
    out = run_scorer("clip_logits", context(f, knn_k=1))
    np.testing.assert_allclose(out["score"], [e / (e + 1), 1 / (e + 1)], atol=1e-6)
    out = run_scorer("clip_logits", context(f, knn_k=1, temperature=0.5))
    np.testing.assert_allclose(out["score"], [e**2 / (e**2 + 1), 1 / (e**2 + 1)], atol=1e-6)


def test_deep_knn_hand_computed():
    # reference images at 0, 10, 90, 100 degrees labelled 0, 0, 1, 1
    ref = deg([0, 10, 90, 100])
    f = hand_features(deg([5, 95, 5]), deg([5, 95, 5]), [1, 1, 0], ref, ref, [0, 0, 1, 1])
    np.testing.assert_allclose(
        run_scorer("deep_knn", context(f, knn_k=2))["score"], [1.0, 0.0, 0.0]
    )
    # k = 3: the third neighbour of 5 degrees is 90 (85 degrees away), labelled 1
    np.testing.assert_allclose(
        run_scorer("deep_knn", context(f, knn_k=3))["score"], [2 / 3, 1 / 3, 1 / 3]
    )


def test_div_hand_computed():
    # the two text neighbours of the query are orthogonal: pair distances 0, 1, 1, 0 -> mean 1/2
    ref_txt = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    ref_img = [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    q_txt = [[1, 1, -0.5]]
    f = hand_features(q_txt, q_txt, [0], ref_img, ref_txt, [0, 0, 0])
    assert run_scorer("div_y", context(f, knn_k=2))["score"] == pytest.approx([0.5])
    assert run_scorer("div_y", context(f, knn_k=2, dist_type="euclidean"))[
        "score"
    ] == pytest.approx([1.0])
    assert run_scorer("div_x", context(f, knn_k=2))["score"] == pytest.approx(
        [0.0]
    )  # identical images


# ---------------------------------------------------------------------------------------------- naive loops
@pytest.mark.parametrize("dist_type", ["cosine", "euclidean"])
@pytest.mark.parametrize("capped", [False, True])
def test_discrepancy_and_diversity_match_naive_loops(dist_type, capped):
    f = tiny_features(seed=1)
    if capped:  # reference = a subset of train: train queries outside it have no self row
        f.reference_index = np.arange(0, 14, 2)
    k = 3
    ctx = context(f, knn_k=k, dist_type=dist_type)
    ref = f.reference
    ref_nn = naive_knn(f, "train", "txt", k)
    second = [ref_nn[r] for r in f.reference_index]  # R(j) for reference row j
    for split in SPLIT_NAMES:
        q, rows = f.splits[split], f.self_rows(split)
        first = naive_knn(f, split, "txt", k)
        for space, key in (("img", "x"), ("txt", "y")):
            dis, div = [], []
            for i in range(len(q)):
                multiset = [m for j in first[i] for m in second[j] if rows is None or m != rows[i]]
                own = getattr(q, space)[i]
                dis.append(
                    np.mean([dist(own, getattr(ref, space)[m], dist_type) for m in multiset])
                )
                div.append(
                    sum(
                        dist(getattr(ref, space)[a], getattr(ref, space)[b], dist_type)
                        for a in first[i]
                        for b in first[i]
                    )
                    / k**2
                )
            np.testing.assert_allclose(
                run_scorer(f"dis_{key}", ctx, split)["score"], dis, atol=1e-6
            )
            np.testing.assert_allclose(
                run_scorer(f"div_{key}", ctx, split)["score"], div, atol=1e-6
            )


def test_deep_knn_matches_naive_loop_on_every_split():
    f = tiny_features(seed=2)
    ctx = context(f)
    for split in SPLIT_NAMES:
        q = f.splits[split]
        expected = [
            np.mean([f.reference.observed[j] != q.observed[i] for j in nn])
            for i, nn in enumerate(naive_knn(f, split, "img", 3))
        ]
        np.testing.assert_allclose(run_scorer("deep_knn", ctx, split)["score"], expected)


def naive_votes(f: Features, split: str, k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    q, ref = f.splits[split], f.reference
    votes = np.zeros((len(q), c))
    for i, nn in enumerate(naive_knn(f, split, "img", k)):
        for j in nn:
            votes[i, ref.observed[j]] += max(float(q.img[i] @ ref.img[j]), 0.0)
        votes[i] /= np.linalg.norm(votes[i])
    ce = -np.log(votes[np.arange(len(q)), q.observed] + 1e-8)
    return votes, ce


def test_simifeat_matches_naive_loop():
    c, k = 3, 3
    f = tiny_features(seed=3, sizes=(30, 9, 9))
    votes, ref_ce = naive_votes(f, "train", k, c)
    obs = f.reference.observed
    rate = np.array([np.mean(votes[obs == cls].argmax(axis=1) != cls) for cls in range(c)])
    rate = np.clip(rate, 0.05, 0.95)
    ctx = context(f, knn_k=k)
    scorer = SCORERS.get("simifeat")(ctx.options)
    np.testing.assert_allclose(scorer.fit(ctx)["class_noise_rate"], rate)
    for split in ("val", "test", "train"):
        q = f.splits[split]
        _, ce = naive_votes(f, split, k, c)
        pct = [
            (np.sum(ref_ce[obs == o] < v) + 0.5 * np.sum(ref_ce[obs == o] == v)) / np.sum(obs == o)
            for o, v in zip(q.observed, ce)
        ]
        out = scorer.score(ctx, split, {})
        np.testing.assert_allclose(out["knn_ce"], ce, rtol=1e-6)
        np.testing.assert_allclose(out["score"], np.array(pct) - (1 - rate[q.observed]), atol=1e-9)


# ---------------------------------------------------------------------------------------------- cleanlab
@pytest.mark.parametrize(
    "method", ["self_confidence", "normalized_margin", "confidence_weighted_entropy"]
)
@pytest.mark.parametrize("temperature", [1.0, 0.01])
def test_cleanlab_scores_equal_cleanlab_rank(method, temperature):
    from cleanlab import rank

    f = tiny_features(seed=4)
    ctx = context(f, temperature=temperature)
    quality_fn = getattr(rank, f"get_{method}_for_each_label")
    for split in SPLIT_NAMES:
        q = f.splits[split]
        zero_shot = softmax(
            q.img.astype(np.float64) @ f.label_prompt_txt.T.astype(np.float64) / temperature, axis=1
        )
        knn = np.zeros((len(q), 3))
        for i, nn in enumerate(naive_knn(f, split, "img", 3)):
            for j in nn:
                knn[i, f.reference.observed[j]] += 1 / 3
        for name, probs in ((method, zero_shot), (f"knn_{method}", knn)):
            quality = quality_fn(q.observed, probs)
            out = run_scorer(name, ctx, split)
            np.testing.assert_allclose(out["score"], 1 - quality, atol=1e-9)
            np.testing.assert_allclose(out["quality"], quality, atol=1e-9)


def test_knn_self_confidence_is_deep_knn():
    ctx = context(tiny_features(seed=5))
    np.testing.assert_allclose(
        run_scorer("knn_self_confidence", ctx)["score"], run_scorer("deep_knn", ctx)["score"]
    )


def test_given_pred_probs_replace_zero_shot_probabilities():
    from cleanlab import rank

    rng = np.random.default_rng(6)
    probs = {s: rng.dirichlet(np.ones(3), size=n) for s, n in zip(SPLIT_NAMES, (14, 7, 7))}
    f = tiny_features(seed=6, pred_probs=probs)
    ctx = context(f)
    for name in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        expected = 1 - getattr(rank, f"get_{name}_for_each_label")(
            f.splits["test"].observed, probs["test"]
        )
        np.testing.assert_allclose(run_scorer(name, ctx)["score"], expected, atol=1e-12)
    scorer = SCORERS.get("self_confidence")(ctx.options)
    assert scorer.fit(ctx)["class_probs"] == "pred_probs"


# ---------------------------------------------------------------------------------------------- clipcleaner
def test_clipcleaner_is_the_low_component_posterior_of_a_per_class_gmm():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(7)
    sizes = (80, 20, 20)
    p_obs = {
        s: np.clip(
            np.where(np.arange(n) < n // 3, rng.normal(0.25, 0.05, n), rng.normal(0.8, 0.05, n)),
            0.01,
            0.99,
        )
        for s, n in zip(SPLIT_NAMES, sizes)
    }
    f = tiny_features(seed=7, sizes=sizes, c=2)
    for s, p in p_obs.items():  # probabilities whose observed-class entry is p_obs
        obs = f.splits[s].observed
        f.splits[s].pred_probs = np.where(
            np.arange(2)[None] == obs[:, None], p[:, None], 1 - p[:, None]
        )
    ctx = context(f, seed=3)
    out = run_scorer("clipcleaner", ctx, "test")
    np.testing.assert_allclose(out["p_observed"], p_obs["test"])
    obs_tr, obs_te = f.splits["train"].observed, f.splits["test"].observed
    expected = np.empty(sizes[2])
    for cls in (0, 1):
        x = p_obs["train"][obs_tr == cls]
        mu, sd = x.mean(), x.std()
        gmm = GaussianMixture(2, random_state=3).fit(((x - mu) / sd)[:, None])
        rows = obs_te == cls
        expected[rows] = gmm.predict_proba(((p_obs["test"][rows] - mu) / sd)[:, None])[
            :, np.argmin(gmm.means_)
        ]
    np.testing.assert_allclose(out["score"], expected, atol=1e-8)
    is_mislabel = f.splits["test"].is_mislabel
    assert out["score"][is_mislabel].min() > out["score"][~is_mislabel].max()


# ---------------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", ON_EMBEDDINGS)
def test_every_scorer_is_deterministic(name):
    outs = []
    for _ in range(2):
        ctx = context(tiny_features(seed=8, sizes=(40, 12, 12)), select=False)
        outs.append({s: run_scorer(name, ctx, s)["score"] for s in SPLIT_NAMES})
    for s in SPLIT_NAMES:
        assert np.all(np.isfinite(outs[0][s])) and outs[0][s].shape == (len(ctx.split(s)),)
        np.testing.assert_array_equal(outs[0][s], outs[1][s])


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name", CLASSIFICATION_ONLY)
def test_classification_only_scorers_refuse_captioning(name):
    f = tiny_features(task="captioning")
    with pytest.raises(
        LemonError,
        match=rf"Scorer '{name}' needs class labels, but this dataset is "
        r"captioning; scorers for captioning data: blip_capfilt, blip_itm, clip_sim, dis_x",
    ):
        SCORERS.get(name)(ScorerOptions()).check(f)


def test_missing_class_probabilities_are_refused():
    f = tiny_features(prompts=False)
    with pytest.raises(
        LemonError, match=r"'self_confidence' needs class probabilities: S_pred_probs"
    ):
        SCORERS.get("self_confidence")(ScorerOptions()).check(f)
    with pytest.raises(LemonError, match=r"'clip_logits' needs the class prompt embeddings"):
        SCORERS.get("clip_logits")(ScorerOptions()).check(f)
    SCORERS.get("deep_knn")(ScorerOptions()).check(f)  # labels suffice


@pytest.mark.parametrize(
    "probs, message",
    [
        ({"val": np.full((7, 3), 1 / 3)}, r"S_pred_probs is given for val but not for train, test"),
        (
            {s: np.full((n, 2), 0.5) for s, n in zip(SPLIT_NAMES, (14, 7, 7))},
            r"train_pred_probs must have shape \(n, 3\)",
        ),
        (
            {s: np.full((n, 3), 2.0) for s, n in zip(SPLIT_NAMES, (14, 7, 7))},
            r"row 0 sums to 6\. Pass probabilities, not logits",
        ),
    ],
)
def test_bad_pred_probs_are_refused(probs, message):
    f = tiny_features(pred_probs=probs)
    with pytest.raises(LemonError, match=message):
        SCORERS.get("clipcleaner")(ScorerOptions()).check(f)


def test_out_of_range_labels_and_small_k_are_refused():
    f = tiny_features()
    f.splits["test"].observed = f.splits["test"].observed + 5
    with pytest.raises(LemonError, match=r"test observed labels must be class ids in \[0, 3\)"):
        SCORERS.get("deep_knn")(ScorerOptions()).check(f)
    with pytest.raises(LemonError, match=r"'dis_y' needs knn_k >= 2"):
        SCORERS.get("dis_y")(ScorerOptions(k=1)).check(tiny_features())


def test_clip_logits_warns_that_given_probabilities_are_ignored(caplog):
    probs = {s: np.full((n, 3), 1 / 3) for s, n in zip(SPLIT_NAMES, (14, 7, 7))}
    with caplog.at_level(logging.WARNING):
        SCORERS.get("clip_logits")(ScorerOptions()).check(tiny_features(pred_probs=probs))
    assert "S_pred_probs are ignored" in caplog.text


# ---------------------------------------------------------------------------------------------- pipeline smoke
def tiny_npz(tmp_path, task: str):
    from lemon.data.synthetic import make_synthetic_embeddings

    arrays = make_synthetic_embeddings(64)
    if task == "captioning":
        for s in SPLIT_NAMES:
            n = len(arrays[f"{s}_label"])
            arrays[f"{s}_caption"] = np.array(
                [f"{s} caption {i} of class {c}" for i, c in enumerate(arrays[f"{s}_label"])]
            )
            flip = arrays[f"{s}_is_mislabel"].astype(bool)
            arrays[f"{s}_noisy_caption"] = np.where(
                flip, np.roll(arrays[f"{s}_caption"], 1), arrays[f"{s}_caption"]
            )
            arrays[f"{s}_is_mislabel"] = (
                arrays[f"{s}_noisy_caption"] != arrays[f"{s}_caption"]
            ).astype(int)
            del arrays[f"{s}_label"], arrays[f"{s}_noisy_label"]
            assert n == len(arrays[f"{s}_caption"])
        del arrays["label_prompt_txt"]
    path = tmp_path / f"{task}.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("name", ON_EMBEDDINGS)
def test_every_scorer_runs_through_the_pipeline(name, tmp_path):
    cfg = RunConfig(
        output_dir=str(tmp_path / "run"),
        dataset="embeddings",
        embeddings=str(tiny_npz(tmp_path, "classification")),
        knn_k=3,
        scorer=name,
        skip_hparam_optim=True,
    )
    result = run(cfg)
    out = tmp_path / "run"
    assert (out / "done").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test/AUROC"] <= 1.0 and "val/F1_optimal" in metrics
    frame = pd.read_csv(out / "scores.csv")
    assert len(frame) == 64 + 8 + 8 and np.isfinite(frame["score"]).all()
    assert json.loads((out / "hparams.json").read_text())["scorer"] == name
    assert result.metrics["test/AUROC"] == metrics["test/AUROC"]
    assert 0.0 <= metrics["estimated_noise_rate"] <= 1.0  # every scorer gets the label-free rule
    assert frame["flagged"].dtype == bool


@pytest.mark.parametrize("name", SCORERS.names())
def test_captioning_data_runs_or_is_refused(name, tmp_path):
    cfg = RunConfig(
        output_dir=str(tmp_path / "run"),
        dataset="embeddings",
        embeddings=str(tiny_npz(tmp_path, "captioning")),
        knn_k=3,
        scorer=name,
        skip_hparam_optim=True,
    )
    if SCORERS.get(name).needs_images:
        with pytest.raises(LemonError, match="holds embeddings only"):
            run(cfg)
    elif name in ANY_TASK:
        assert run(cfg).metrics["test/n"] == 8
    else:
        with pytest.raises(LemonError, match="needs class labels, but this dataset is captioning"):
            run(cfg)


def test_pipeline_uses_given_pred_probs(tmp_path):
    from lemon.data.synthetic import make_synthetic_embeddings

    arrays = make_synthetic_embeddings(64)
    rng = np.random.default_rng(9)
    for s in SPLIT_NAMES:
        arrays[f"{s}_pred_probs"] = rng.dirichlet(np.ones(10), size=len(arrays[f"{s}_label"]))
    path = tmp_path / "probs.npz"
    np.savez(path, **arrays)
    run(
        RunConfig(
            output_dir=str(tmp_path / "run"),
            dataset="embeddings",
            embeddings=str(path),
            knn_k=3,
            scorer="self_confidence",
        )
    )
    frame = pd.read_csv(tmp_path / "run" / "scores.csv")
    test = frame[frame["split"] == "test"].sort_values("idx")
    p = arrays["test_pred_probs"][np.arange(8), arrays["test_noisy_label"]]
    np.testing.assert_allclose(test["score"], 1 - p, atol=1e-9)
    hparams = json.loads((tmp_path / "run" / "hparams.json").read_text())
    assert (
        hparams["class_probs"] == "pred_probs" and hparams["cleanlab_method"] == "self_confidence"
    )
