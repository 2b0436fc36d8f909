"""kNN search (lemon/neighbors/): self-exclusion by index, duplicates, backends agree, recall."""

from __future__ import annotations

import numpy as np
import pytest

from lemon.errors import LemonError
from lemon.features import normalize_rows
from lemon.neighbors import knn


def _unit(n, d, seed=0):
    return normalize_rows(np.random.default_rng(seed).normal(size=(n, d)), "x")


def test_matches_brute_force_and_excludes_self_by_index():
    x = _unit(50, 8)
    sim, idx = knn(x, x, 5, exclude=np.arange(50))
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1)[:, :5]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(sim, np.take_along_axis(full, expected, 1), atol=1e-6)


def test_duplicates_of_the_query_still_count():
    """'Drop the first hit' would drop the duplicate instead of the query itself; exclusion is by index."""
    x = _unit(20, 4)
    x[7] = x[3]  # exact duplicate
    _, idx = knn(x, x, 3, exclude=np.arange(20))
    assert 7 in idx[3] and 3 not in idx[3]
    assert 3 in idx[7] and 7 not in idx[7]


def test_queries_outside_the_reference_exclude_nothing():
    ref, q = _unit(30, 6, 0), _unit(10, 6, 1)
    _, a = knn(q, ref, 4)
    _, b = knn(q, ref, 4, exclude=np.full(10, -1))
    np.testing.assert_array_equal(a, b)


def test_chunking_does_not_change_the_result(monkeypatch):
    import lemon.neighbors.exact as nb

    x = _unit(300, 16)
    _, whole = knn(x, x, 7, exclude=np.arange(300))
    monkeypatch.setattr(nb, "_CHUNK_BYTES", 4 * 300 * 17)  # 17 rows per chunk
    _, chunked = knn(x, x, 7, exclude=np.arange(300))
    np.testing.assert_array_equal(whole, chunked)


def test_faiss_backend_agrees():
    pytest.importorskip("faiss")
    x = _unit(200, 16)
    exclude = np.where(np.arange(200) % 3 == 0, np.arange(200), -1)
    s1, i1 = knn(x, x, 10, exclude=exclude, backend="torch")
    s2, i2 = knn(x, x, 10, exclude=exclude, backend="faiss")
    np.testing.assert_array_equal(np.sort(i1, 1), np.sort(i2, 1))
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def test_k_must_be_smaller_than_the_reference():
    x = _unit(40, 4)
    with pytest.raises(
        LemonError, match=r"knn_k=50 but the reference set has 40 samples \(k must be < 40\)"
    ):
        knn(x, x, 50)


def test_unknown_backend():
    x = _unit(10, 4)
    with pytest.raises(
        LemonError, match=r"Unknown knn backend .annoy.. Available: auto, torch, torch_fp16"
    ):
        knn(x, x, 2, backend="annoy")


def test_symmetric_self_search_matches_brute_force(monkeypatch):
    """The train split's self-search multiplies only the blocks on and above the diagonal; with several
    blocks (block side 64 here) it must give the brute-force neighbours, duplicates counted by index."""
    import lemon.neighbors.exact as nb

    x = _unit(300, 16, seed=3)
    x[250] = x[10]  # an exact duplicate in another block
    monkeypatch.setattr(nb, "_SELF_BLOCK", 64)
    assert nb._is_self_search(x, x, np.arange(300))
    sim, idx = knn(x, x, 7, exclude=np.arange(300))
    full = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(full, -np.inf)
    expected = np.argsort(-full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(np.sort(idx, 1), np.sort(expected, 1))
    np.testing.assert_allclose(sim, np.take_along_axis(full, expected, 1), atol=1e-6)
    assert (
        idx[10, 0] == 250 and idx[250, 0] == 10
    )  # the duplicate is the nearest, the row itself never
    assert not np.any(idx == np.arange(300)[:, None])
    # a query set that only looks like the reference (other exclusions) takes the general path
    assert not nb._is_self_search(x, x, np.full(300, -1))
