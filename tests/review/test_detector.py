"""A finished run as a detector (``lemon.Detector``, ``run_lemon --detector``): a pair that was in the run
gets the run's score, new pairs are scored as a hand-written LEMoN says against the run's reference set
with its hyper-parameters and threshold, nothing is fitted, the run's folder is never touched, and every
refusal is one line."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lemon
import run_lemon
from lemon.core.errors import LemonError
from lemon.data.synthetic import CIFAR10_CLASSES, make_synthetic_embeddings

N = 600  # synthetic pairs of run A's train split (val and test N/8 each)
#: run A: k, a reference cap below its train size, and given hyper-parameters (none of LEMoN_FIX's)
H = {"beta": 0.5, "gamma": 0.8, "tau_1_n": 2.0, "tau_2_n": 1.0, "tau_1_m": 3.0, "tau_2_m": 0.5}
A_FLAGS = ["--knn_k", "7", "--compr_dataset_size_limit", "400"]
A_FLAGS += [x for name, v in H.items() for x in (f"--{name}", str(v))]


def _synthetic_run(out: Path, *flags: str) -> Path:
    assert run_lemon.main(["--dataset", "synthetic", "--output_dir", str(out), *flags]) == 0
    return out


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    return _synthetic_run(tmp_path_factory.mktemp("a") / "A", "--n_synthetic", str(N), *A_FLAGS)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Run A's own pairs (the synthetic generator is seeded) and new pairs of the same kind."""
    return {"own": make_synthetic_embeddings(N), "new": make_synthetic_embeddings(N, data_seed=5)}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def lemon_by_hand(run: Path, own: dict, img, txt, exclude: int = -1) -> float:
    """LEMoN of one pair against run A's reference set (its train rows in neighbours.npz's
    reference_index), written out in float64 from the method's definition (cosine, w1 = exp(tau_1 a.b))."""
    ref = np.load(run / "neighbours.npz")["reference_index"]
    r_img, r_txt = _unit(own["train_img"][ref]), _unit(own["train_txt"][ref])
    x, y = _unit(np.atleast_2d(img))[0], _unit(np.atleast_2d(txt))[0]
    sim_i, sim_t = r_img @ x, r_txt @ y
    if exclude >= 0:
        sim_i[exclude] = sim_t[exclude] = -np.inf
    n_, m_ = np.argsort(-sim_i)[:7], np.argsort(-sim_t)[:7]
    d_ref = 1 - np.sum(r_img * r_txt, axis=1)
    s_n = np.mean(np.exp(H["tau_1_n"] * sim_i[n_] - H["tau_2_n"] * d_ref[n_]) * (1 - r_txt[n_] @ y))
    s_m = np.mean(np.exp(H["tau_1_m"] * sim_t[m_] - H["tau_2_m"] * d_ref[m_]) * (1 - r_img[m_] @ x))
    return float(1 - x @ y + H["beta"] * s_n + H["gamma"] * s_m)


def _split(arrays: dict, split: str) -> dict:
    return {
        "image_embeddings": arrays[f"{split}_img"],
        "text_embeddings": arrays[f"{split}_txt"],
        "labels": arrays[f"{split}_noisy_label"],
    }


def _files(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its content hash and modification time."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_pairs_of_the_run_get_its_scores_and_flags(run_a, data):
    detector = lemon.Detector.load(run_a, device="cpu")
    hparams = json.loads((run_a / "hparams.json").read_text())
    scores = pd.read_csv(run_a / "scores.csv")
    assert hparams["flag_rule"] == "optimal" and detector.k == 7 and detector.reference_size == 400
    assert detector.threshold == hparams["thresholds"]["optimal"]
    reference = np.load(run_a / "neighbours.npz")["reference_index"]
    for split in ("train", "val", "test"):
        df = detector.score(**_split(data["own"], split))
        theirs = scores[scores.split == split]
        for column in ("score", "d_mm", "s_n", "s_m"):
            np.testing.assert_allclose(df[column], theirs[column], rtol=0, atol=1e-6)
        assert (df.flagged.to_numpy() == theirs.flagged.to_numpy()).all()
        assert (df.flagged == (df.score >= hparams["thresholds"]["optimal"])).all()
        idx = theirs.idx.to_numpy()
        in_reference = np.isin(idx, reference) if split == "train" else np.zeros(len(idx), bool)
        np.testing.assert_array_equal(df.detector_idx, np.where(in_reference, idx, -1))
    # class names are the run's classes too
    labels = [CIFAR10_CLASSES[i] for i in data["own"]["val_noisy_label"]]
    by_name = detector.score(**{**_split(data["own"], "val"), "labels": labels})
    np.testing.assert_array_equal(by_name.score, detector.score(**_split(data["own"], "val")).score)
    assert df.attrs["threshold"] == detector.threshold and df.attrs["hparams"] == H


def test_new_pairs_are_scored_against_the_reference_set_as_lemon_says(run_a, data):
    detector = lemon.Detector.load(run_a, device="cpu")
    new, own = data["new"], data["own"]
    df = detector.score(**_split(new, "test"))
    assert (df.detector_idx == -1).all()
    for i in (0, 17, 40):
        expected = lemon_by_hand(run_a, own, new["test_img"][i], new["test_txt"][i])
        assert df.score[i] == pytest.approx(expected, rel=1e-5)
    # a copy of a reference pair (another norm, float32 rounding) is that pair: its row is excluded
    reference = np.load(run_a / "neighbours.npz")["reference_index"]
    row = 5
    i = int(reference[row])
    img, txt = own["train_img"][i : i + 1] * 3.0, own["train_txt"][i : i + 1] * 0.5
    label = own["train_noisy_label"][i : i + 1]
    copy = detector.score(image_embeddings=img, text_embeddings=txt, labels=label)
    assert copy.detector_idx[0] == i
    assert copy.score[0] == pytest.approx(lemon_by_hand(run_a, own, img, txt, row), rel=1e-5)
    theirs = pd.read_csv(run_a / "scores.csv").query("split == 'train'").set_index("idx")
    assert copy.score[0] == pytest.approx(
        theirs.score[i], rel=1e-6
    )  # rounding of the rescaled copy
    # the same image with another pair's text and label is a new pair: it sees the reference pair
    other = int(np.flatnonzero(own["train_noisy_label"] != label[0])[0])
    swapped = detector.score(
        image_embeddings=img,
        text_embeddings=own["train_txt"][other : other + 1],
        labels=own["train_noisy_label"][other : other + 1],
    )
    assert swapped.detector_idx[0] == -1
    expected = lemon_by_hand(run_a, own, img, own["train_txt"][other])
    assert swapped.score[0] == pytest.approx(expected, rel=1e-5)


def test_the_command_line_writes_a_run_folder_that_agrees_with_the_api(
    run_a, data, tmp_path, capsys
):
    before = _files(run_a)
    out = tmp_path / "B"
    flags = ["--dataset", "synthetic", "--n_synthetic", str(N), "--data_seed", "5"]
    assert run_lemon.main(["--detector", str(run_a), *flags, "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"detector: {run_a}" in printed and "nothing fitted" in printed
    assert {"args.json", "scores.csv", "hparams.json", "metrics.json", "log.txt", "done"} <= {
        p.name for p in out.iterdir()
    }
    args = json.loads((out / "args.json").read_text())
    hparams = json.loads((out / "hparams.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    a_hparams = json.loads((run_a / "hparams.json").read_text())
    threshold = a_hparams["thresholds"]["optimal"]
    assert args["detector"] == str(run_a) and args["knn_k"] == 7
    assert args["detector_run"]["threshold"] == threshold
    assert (
        hparams["detector"]["threshold"] == threshold
        and hparams["thresholds"] == a_hparams["thresholds"]
    )
    assert {n: hparams[n] for n in H} == H
    scores = pd.read_csv(out / "scores.csv")
    assert (scores.flagged == (scores.score >= threshold)).all()
    assert (scores.detector_idx == -1).all()  # data_seed 5: no pair of A
    detector = lemon.Detector.load(run_a, device="cpu")
    for split in ("train", "val", "test"):
        api = detector.score(**_split(data["new"], split))
        cli = scores[scores.split == split]
        np.testing.assert_allclose(api.score, cli.score, rtol=0, atol=1e-9)
        assert (api.flagged.to_numpy() == cli.flagged.to_numpy()).all()
        y = data["new"][f"{split}_is_mislabel"].astype(bool)
        f1 = 2 * (cli.flagged & y).sum() / (cli.flagged.sum() + y.sum())
        assert metrics[f"{split}/F1_optimal"] == pytest.approx(f1)
    assert metrics["test/AUROC"] > 0.8
    # run A's own data through the command line, scored in blocks of 128 rows: its scores again
    again = tmp_path / "A_again"
    own = ["--dataset", "synthetic", "--n_synthetic", str(N), "--stream_block", "128"]
    assert run_lemon.main(["--detector", str(run_a), *own, "--output_dir", str(again)]) == 0
    mine, theirs = pd.read_csv(again / "scores.csv"), pd.read_csv(run_a / "scores.csv")
    np.testing.assert_allclose(mine.score, theirs.score, rtol=0, atol=1e-6)
    assert (mine.flagged == theirs.flagged).all()
    reference = np.load(run_a / "neighbours.npz")["reference_index"]
    train = mine.split == "train"
    assert (mine.detector_idx[train] >= 0).sum() == len(reference) == 400
    assert _files(run_a) == before  # the detector's folder: same files, same bytes, same mtimes


def test_nothing_is_fitted(run_a, data, tmp_path, monkeypatch):
    def fitted(*args, **kwargs):
        raise AssertionError("a detector fitted something")

    for target in (
        "lemon.scorers.lemon.LemonScorer.fit",
        "lemon.scorers.lemon.search",
        "lemon.method.labelfree.label_free_rule",
        "lemon.method.labelfree.estimate_noise_rate",
        "lemon.method.evaluate.select_thresholds",
        "lemon.run.stages.label_free_rule",
        "lemon.run.stages.select_thresholds",
    ):
        monkeypatch.setattr(target, fitted)
    detector = lemon.Detector.load(run_a, device="cpu")
    detector.score(**_split(data["new"], "val"))
    flags = ["--dataset", "synthetic", "--n_synthetic", str(N), "--data_seed", "5"]
    out = tmp_path / "B"
    assert run_lemon.main(["--detector", str(run_a), *flags, "--output_dir", str(out)]) == 0


def test_an_approximate_search_is_rebuilt_as_the_run_built_it(tmp_path):
    ivf = ["--knn_backend", "ivf_gemm", "--knn_nlist", "8", "--knn_nprobe", "2"]
    run = _synthetic_run(tmp_path / "ivf", "--n_synthetic", "800", "--lemon_fix", *ivf)
    own = make_synthetic_embeddings(800)
    theirs = pd.read_csv(run / "scores.csv").query("split == 'test'").score.to_numpy()
    rebuilt = lemon.Detector.load(run, device="cpu")
    np.testing.assert_allclose(
        rebuilt.score(**_split(own, "test")).score, theirs, rtol=0, atol=1e-6
    )
    assert rebuilt.last_search["knn_backend"] == "ivf_gemm"
    # exact search finds neighbours the run's search missed (recall@30 of its image search < 1)
    exact = lemon.Detector.load(run, device="cpu", knn_backend="torch")
    assert np.abs(exact.score(**_split(own, "test")).score - theirs).max() > 1e-3


def test_embeddings_files_without_class_names_give_the_runs_class_ids(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", **make_synthetic_embeddings(300))
    run = tmp_path / "A"
    a = ["--dataset", "embeddings", "--embeddings", str(tmp_path / "a.npz"), "--knn_k", "5"]
    assert run_lemon.main([*a, "--skip_hparam_optim", "--output_dir", str(run)]) == 0
    new = make_synthetic_embeddings(300, data_seed=2)
    np.savez(tmp_path / "b.npz", **new)
    b = ["--dataset", "embeddings", "--embeddings", str(tmp_path / "b.npz")]
    assert run_lemon.main(["--detector", str(run), *b, "--output_dir", str(tmp_path / "B")]) == 0
    scores = pd.read_csv(tmp_path / "B" / "scores.csv")
    test = scores[scores.split == "test"]
    np.testing.assert_array_equal(test.observed_label, new["test_noisy_label"])
    api = lemon.Detector.load(run, device="cpu").score(**_split(new, "test"))
    np.testing.assert_allclose(api.score, test.score, rtol=0, atol=1e-9)
    new["val_noisy_label"][0] = 12  # a class the run does not have
    np.savez(tmp_path / "c.npz", **new)
    b[-1] = str(tmp_path / "c.npz")
    capsys.readouterr()
    assert run_lemon.main(["--detector", str(run), *b, "--output_dir", str(tmp_path / "C")]) == 2
    assert re.search(
        r"observed labels hold 1 classes that detector .* does not know: 12; its 10 classes are "
        r"0, 1, 2, .*ids 0\.\.9\)",
        capsys.readouterr().err,
    )


# ---------------------------------------------------------------------------------- refusals (one line)
def test_runs_that_cannot_be_detectors_are_refused(run_a, tmp_path):
    with pytest.raises(LemonError, match=r"Detector .*nowhere not found: pass the --output_dir"):
        lemon.Detector.load(tmp_path / "nowhere")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_a, unfinished)
    (unfinished / "done").unlink()
    with pytest.raises(
        LemonError,
        match=r"is not a finished run \(no 'done' file\).*python -m run_lemon --dataset synthetic "
        r"--n_synthetic 600 --knn_k 7",
    ):
        lemon.Detector.load(unfinished)
    simifeat = _synthetic_run(tmp_path / "S", "--n_synthetic", "300", "--scorer", "simifeat")
    with pytest.raises(
        LemonError,
        match=r"scored with 'simifeat'.*cannot score new pairs; use a run of clip_logits, clip_sim, "
        r"deep_knn, lemon\.",
    ):
        lemon.Detector.load(simifeat)
    b = tmp_path / "B"
    flags = ["--dataset", "synthetic", "--n_synthetic", "300", "--output_dir", str(b)]
    assert run_lemon.main(["--detector", str(run_a), *flags]) == 0
    with pytest.raises(LemonError, match=rf"is itself a detector run .* pass {run_a} as the"):
        lemon.Detector.load(b)


def test_new_pairs_it_cannot_score_are_refused(run_a, data):
    detector = lemon.Detector.load(run_a, device="cpu")
    val = _split(data["own"], "val")
    with pytest.raises(
        LemonError, match=r"labels hold 1 classes that detector .* does not know: 'zebra'; its 10"
    ):
        detector.score(**{**val, "labels": ["cat"] * 74 + ["zebra"]})
    with pytest.raises(LemonError, match=r"labels hold 2 classes .* does not know: 10, 12;"):
        detector.score(**{**val, "labels": [3] * 73 + [10, 12]})
    with pytest.raises(LemonError, match=r"have dimension 16, but detector .* has 512"):
        detector.score(
            **{**val, "image_embeddings": np.ones((75, 16)), "text_embeddings": np.ones((75, 16))}
        )
    with pytest.raises(LemonError, match=r"scored precomputed embeddings .* no model to embed"):
        detector.score(images=["x.png"] * 75, labels=val["labels"])
    with pytest.raises(
        LemonError, match=r"one entry per pair, got image_embeddings 75, .*labels 74"
    ):
        detector.score(**{**val, "labels": val["labels"][:-1]})


def test_command_line_refusals(run_a, tmp_path, capsys):
    flags = ["--dataset", "synthetic", "--n_synthetic", "300", "--output_dir", str(tmp_path / "B")]
    assert run_lemon.main(["--detector", str(run_a), *flags, "--knn_k", "5", "--beta", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(r"--knn_k, --beta: a --detector run scores with the detector's .*fits nothing; "
                     r"drop --knn_k, --beta\.", err)  # fmt: skip
    inside = ["--dataset", "synthetic", "--n_synthetic", "300", "--output_dir", str(run_a / "B")]
    assert run_lemon.main(["--detector", str(run_a), *inside]) == 2
    assert "is inside the detector's own folder" in capsys.readouterr().err
    csv = [
        "--dataset",
        "csv",
        "--data_path",
        str(tmp_path / "x.csv"),
        "--output_dir",
        str(tmp_path / "C"),
    ]
    assert run_lemon.main(["--detector", str(run_a), *csv]) == 2
    assert "scored precomputed embeddings (--dataset synthetic)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- raw images, tiny CLIP
COLOURS = {"blue": (30, 30, 220), "green": (30, 200, 30), "red": (220, 30, 30)}
SPLIT_OF = ["train"] * 6 + ["val"] * 2 + ["test"]


def _table(folder: Path, rows: range, classes: tuple[str, ...] = tuple(COLOURS)) -> pd.DataFrame:
    """Coloured squares written as image files: row i is class i % len(classes), labelled as the next
    class when i % 9 is 4, 6 or 8; a split column (6 train, 2 val, 1 test in every 9) and the clean label."""
    from PIL import Image

    records = []
    for i in rows:
        name = classes[i % len(classes)]
        file = folder / "imgs" / f"{i:03d}.png"
        noise = np.random.default_rng(i).integers(-40, 40, (32, 32, 3))
        pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
        file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(file)
        wrong = i % 9 in (4, 6, 8)
        label = classes[(i + 1) % len(classes)] if wrong else name
        records.append(
            {"image": str(file), "label": label, "clean": name, "split": SPLIT_OF[i % 9]}
        )
    return pd.DataFrame(records)


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory):
    """Run A on 90 image files (3 colour classes) embedded by a tiny CLIP, with its own cache."""
    from tiny_clip import tiny_clip_checkpoint

    root = tmp_path_factory.mktemp("raw")
    model = tiny_clip_checkpoint(root / "model")
    table = _table(root, range(90))
    table.to_csv(root / "a.csv", index=False)
    args = ["--dataset", "csv", "--data_path", str(root / "a.csv"), "--clean_column", "clean"]
    args += ["--clip_model", str(model), "--knn_k", "5", "--cache_dir", str(root / "cache")]
    out = root / "A"
    assert run_lemon.main([*args, "--device", "cpu", "--output_dir", str(out)]) == 0
    return {"root": root, "model": model, "table": table, "out": out, "args": args}


def test_raw_images_are_embedded_with_the_runs_model(raw_run, tmp_path, capsys):
    run, names = raw_run["out"], sorted(COLOURS)
    scores = pd.read_csv(run / "scores.csv")
    detector = lemon.Detector.load(run, device="cpu", cache_dir=tmp_path / "new-cache")
    val = scores[scores.split == "val"]
    df = detector.score(images=list(val.image), labels=[names[i] for i in val.observed_label])
    np.testing.assert_allclose(df.score, val.score, rtol=0, atol=1e-6)
    assert (df.flagged.to_numpy() == val.flagged.to_numpy()).all()
    # on the command line: pairs of A and new pairs, of two of A's three classes only (own ids 0, 1)
    a = raw_run["table"]
    of_a = a[(a.label != "green") & (a.clean != "green")].iloc[::4]
    new = _table(tmp_path, range(100, 136), classes=("blue", "red"))
    pd.concat([of_a, new]).to_csv(tmp_path / "b.csv", index=False)
    data = ["--dataset", "csv", "--data_path", str(tmp_path / "b.csv"), "--clean_column", "clean"]
    out = tmp_path / "B"
    assert run_lemon.main(["--detector", str(run), *data, "--output_dir", str(out)]) == 0
    b = pd.read_csv(out / "scores.csv")
    assert len(b) == len(of_a) + len(new)
    expected = b.text.str.replace("A photo of a ", "").map({n: i for i, n in enumerate(names)})
    np.testing.assert_array_equal(b.observed_label, expected)  # the run's class ids
    shared = b.merge(scores, on=["image", "text"], suffixes=("", "_a"))
    assert len(shared) == len(of_a)
    np.testing.assert_array_equal(shared.detector_idx >= 0, shared.split_a == "train")
    np.testing.assert_allclose(shared.score, shared.score_a, rtol=0, atol=1e-6)
    assert json.loads((out / "args.json").read_text())["clip_model"] == str(raw_run["model"])
    # another model
    other = ["--clip_model", "huggingface_clip", "--output_dir", str(tmp_path / "D")]
    capsys.readouterr()
    assert run_lemon.main(["--detector", str(run), *data, *other]) == 2
    assert re.search(
        r"--clip_model huggingface_clip differs from the detector's \(.*tiny_open_clip, .*drop "
        r"--clip_model\.",
        capsys.readouterr().err,
    )
    # a class the run does not know
    pd.concat([of_a, new.assign(label="purple")]).to_csv(tmp_path / "c.csv", index=False)
    data[3] = str(tmp_path / "c.csv")
    capsys.readouterr()
    code = run_lemon.main(["--detector", str(run), *data, "--output_dir", str(tmp_path / "C")])
    assert code == 2
    assert "observed labels hold 1 classes that detector" in capsys.readouterr().err


def test_a_detector_whose_model_or_embeddings_are_gone_is_refused(raw_run):
    root, run, model = raw_run["root"], raw_run["out"], raw_run["model"]
    lemon.Detector.load(run, device="cpu")  # whole, it loads
    shutil.move(root / "cache", root / "cache-moved")
    try:
        with pytest.raises(
            LemonError,
            match=r"its image/csv embeddings \(60 inputs\) are not in the embedding cache .*cache/"
            r"embeddings \(cleared or moved.*run it again to embed them: python -m run_lemon "
            r"--dataset csv",
        ):
            lemon.Detector.load(run, device="cpu")
    finally:
        shutil.move(root / "cache-moved", root / "cache")
    shutil.move(model, root / "model-moved")
    try:
        with pytest.raises(LemonError, match=rf"its model {model} is gone \(moved or deleted\)"):
            lemon.Detector.load(run, device="cpu")
    finally:
        shutil.move(root / "model-moved", model)
    lemon.Detector.load(run, device="cpu")
