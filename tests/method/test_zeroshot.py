"""Zero-shot class probabilities and their label-free temperature."""

from __future__ import annotations

import numpy as np
import pytest

from lemon.method.zeroshot import (
    TEMPERATURES,
    fit_temperature,
    zero_shot_columns,
    zero_shot_probs,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_probabilities_are_the_softmax_of_cosine_over_temperature():
    img = _unit(np.array([[1.0, 0.0], [0.6, 0.8]]))
    prompts = _unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    probs = zero_shot_probs(img, prompts, 0.5)
    expected = np.exp(np.array([[2.0, 0.0], [1.2, 1.6]]))  # cos / 0.5
    np.testing.assert_allclose(probs, expected / expected.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("true_temperature", [0.01, 0.05, 0.2])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_temperature):
    rng = np.random.default_rng(0)
    prompts = _unit(rng.normal(size=(6, 16)))
    img = _unit(rng.normal(size=(6000, 16)))
    probs = zero_shot_probs(img, prompts, true_temperature)
    labels = (probs.cumsum(axis=1) > rng.random((len(img), 1))).argmax(axis=1)
    fitted = fit_temperature(img, prompts, labels)
    step = TEMPERATURES[1] / TEMPERATURES[0]
    assert true_temperature / step**2 <= fitted <= true_temperature * step**2


def test_noisy_labels_make_the_fitted_softmax_flatter_not_sharper():
    rng = np.random.default_rng(1)
    prompts = _unit(rng.normal(size=(5, 16)))
    img = _unit(rng.normal(size=(6000, 16)))
    labels = zero_shot_probs(img, prompts, 0.05).argmax(axis=1)
    noisy = labels.copy()
    flip = rng.random(len(labels)) < 0.3
    noisy[flip] = rng.integers(0, 5, flip.sum())
    assert fit_temperature(img, prompts, noisy) > fit_temperature(img, prompts, labels)


def test_scores_csv_columns_are_the_argmax_and_the_observed_class_probability_block_by_block():
    """zero_shot_columns, computed 333 rows at a time in float32, against a hand-written softmax."""
    rng = np.random.default_rng(3)
    img = rng.standard_normal((2000, 16))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    prompts = rng.standard_normal((7, 16))
    prompts /= np.linalg.norm(prompts, axis=1, keepdims=True)
    observed = rng.integers(0, 7, 2000)
    label, prob = zero_shot_columns(img, prompts, observed, 0.05, block=333)
    logits = img @ prompts.T / 0.05
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(label, softmax.argmax(axis=1))
    np.testing.assert_allclose(prob, softmax[np.arange(2000), observed], rtol=1e-5, atol=1e-9)
