"""The synthetic generator (lemon/data/synthetic.py) draws the N2000 reference's inputs: checked against what
the original implementation recorded about them (labels per row, and each pair's d_mm)."""

from __future__ import annotations

import numpy as np

from lemon.data.synthetic import make_synthetic_embeddings


def test_reproduces_n2000(n2000):
    ours = make_synthetic_embeddings(2000)
    out = n2000.outputs
    for split in ("train", "val", "test"):
        rows = out["sset"] == split
        np.testing.assert_array_equal(ours[f"{split}_label"], out["actual_label"][rows])
        np.testing.assert_array_equal(ours[f"{split}_noisy_label"], out["noisy_label"][rows])
        np.testing.assert_array_equal(ours[f"{split}_is_mislabel"], out["is_mislabel"][rows])
        img, txt = (ours[f"{split}_{m}"].astype(np.float64) for m in ("img", "txt"))
        cos = (img * txt).sum(1) / np.linalg.norm(img, axis=1) / np.linalg.norm(txt, axis=1)
        np.testing.assert_allclose(1 - cos, out["d_1"][rows], atol=1e-6)


def test_noise_count_and_determinism():
    a, b = make_synthetic_embeddings(800, 0.25), make_synthetic_embeddings(800, 0.25)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["train_is_mislabel"].sum() == 200 and a["val_is_mislabel"].sum() == 25
    flipped = a["train_is_mislabel"].astype(bool)
    assert np.all(a["train_label"][flipped] != a["train_noisy_label"][flipped])
    assert np.all(a["train_label"][~flipped] == a["train_noisy_label"][~flipped])


def test_data_seed_draws_a_replicate():
    """Seeds of a sweep must be real replicates: another data_seed, other draws, same sizes and noise count."""
    a, b = make_synthetic_embeddings(400), make_synthetic_embeddings(400, data_seed=1)
    again = make_synthetic_embeddings(400, data_seed=1)
    assert all(np.array_equal(b[k], again[k]) for k in b)
    assert not np.array_equal(a["train_img"], b["train_img"])
    np.testing.assert_array_equal(
        a["label_prompt_txt"], b["label_prompt_txt"]
    )  # same classes, same prompts
    assert a["val_is_mislabel"].sum() == b["val_is_mislabel"].sum() == round(0.4 * 50)
