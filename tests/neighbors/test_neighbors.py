"""kNN search (lemon/neighbors/): self-exclusion by index, duplicates, backends agree, recall."""

from __future__ import annotations

import numpy as np
import pytest

from lemon.core.errors import LemonError
from lemon.data.features import normalize_rows
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


def _ties_only(found, truth, sim_truth, atol=1e-6):
    """Rows where the neighbour sets differ must differ only among ties at the k-th similarity."""
    for r in np.flatnonzero((np.sort(found, 1) != np.sort(truth, 1)).any(axis=1)):
        missing = set(truth[r]) - set(found[r])
        # every missed neighbour sits at the k-th similarity (a tie it may lose)
        assert all(
            abs(sim_truth[r][list(truth[r]).index(j)] - sim_truth[r, -1]) < atol for j in missing
        )


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_candidates_reranked_in_float32_equal_exact_search(dtype):
    """Half-precision matmul proposes candidates, float32 re-ranks them: the float32 neighbours up to
    ties, float32 similarities, self excluded by index — also for tightly clustered vectors whose
    similarities half precision cannot tell apart."""
    from lemon.neighbors import build_searcher

    rng = np.random.default_rng(4)
    centre = rng.normal(size=32)
    tight = normalize_rows(centre + 0.05 * rng.normal(size=(600, 32)), "x")  # sims ~0.99
    for ref in (_unit(600, 32, 5), tight):
        exclude = np.where(np.arange(600) % 2 == 0, np.arange(600), -1)
        exact_sim, exact_idx = knn(ref, ref, 10, exclude=exclude)
        sim, idx = build_searcher(ref, f"torch_{dtype}").search(ref, 10, exclude)
        assert sim.shape == idx.shape == (600, 10) and sim.dtype == np.float32
        assert not np.any(idx == exclude[:, None])
        _ties_only(idx, exact_idx, exact_sim)
        np.testing.assert_allclose(sim, exact_sim, atol=1e-6)


def test_half_precision_search_of_a_tiny_reference_is_exact():
    from lemon.neighbors import build_searcher

    ref = _unit(20, 8, 2)
    _, idx = build_searcher(ref, "torch_bf16").search(ref, 5, np.arange(20))
    np.testing.assert_array_equal(idx, knn(ref, ref, 5, exclude=np.arange(20))[1])


@pytest.mark.parametrize("backend", ["ivf_gemm", "ivf", "hnsw"])
def test_approximate_backends_exclude_by_index_and_find_most_neighbours(backend):
    pytest.importorskip("faiss")
    from lemon.neighbors import KnnOptions, build_searcher, recall_at_k

    rng = np.random.default_rng(6)
    centres = normalize_rows(rng.normal(size=(8, 16)), "c")
    x = normalize_rows(centres[rng.integers(0, 8, 800)] + 0.3 * rng.normal(size=(800, 16)), "x")
    x[7] = x[3]  # a duplicate of row 3
    options = KnnOptions(backend=backend, nlist=8, nprobe=3)
    _, idx = build_searcher(x, backend, options).search(x, 10, np.arange(800))
    _, exact = knn(x, x, 10, exclude=np.arange(800))
    assert not np.any(idx == np.arange(800)[:, None])
    assert 7 in idx[3] and 3 in idx[7]
    assert recall_at_k(idx, exact) > 0.8


@pytest.mark.parametrize("backend", ["ivf", "ivf_gemm"])
def test_ivf_probing_every_list_is_exact(backend):
    pytest.importorskip("faiss")
    from lemon.neighbors import KnnOptions, build_searcher

    x = _unit(500, 16, 7)
    exclude = np.where(np.arange(500) < 250, np.arange(500), -1)
    searcher = build_searcher(x, backend, KnnOptions(backend=backend, nlist=10, nprobe=10))
    sim, idx = searcher.search(x, 6, exclude)
    exact_sim, exact_idx = knn(x, x, 6, exclude=exclude)
    _ties_only(idx, exact_idx, exact_sim)
    np.testing.assert_allclose(sim, exact_sim, atol=1e-5)
    assert "nlist=10 nprobe=10" in searcher.describe()
    if backend == "ivf_gemm":  # lists longer than the mean were scanned in pieces
        assert int(searcher.pieces.max()) > 1


def test_recall_at_k_counts_shared_ids_per_row():
    from lemon.neighbors import recall_at_k

    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 1], [0, 10, 11, 5]])  # 3 of 4, then 1 of 4
    assert recall_at_k(found, truth) == 0.5
    assert recall_at_k(truth, truth) == 1.0


def test_auto_backend_is_exact_float32_up_to_the_measured_size(monkeypatch):
    import lemon.neighbors as nb

    small = nb.resolve_backend(nb.KnnOptions(), 1000, 2000)
    assert small[0] == "torch" and "exact float32" in small[1]
    monkeypatch.setattr(nb, "cpu_has_bf16", lambda: True)
    large = nb.resolve_backend(nb.KnnOptions(), 375_000, 50_000)
    assert large[0] == "torch_bf16" and "375,000 queries x 50,000 reference" in large[1]
    monkeypatch.setattr(nb, "cpu_has_bf16", lambda: False)
    assert nb.resolve_backend(nb.KnnOptions(), 375_000, 50_000)[0] == "torch"
    assert nb.resolve_backend(nb.KnnOptions(device="cuda"), 100, 200)[0] == "torch_fp16"
    assert nb.resolve_backend(nb.KnnOptions(backend="hnsw"), 100, 200) == (
        "hnsw",
        "--knn_backend hnsw",
    )
    pytest.importorskip("faiss")
    million = nb.resolve_backend(nb.KnnOptions(), 1_250_000, 50_000)
    assert million[0] == "ivf_gemm" and "approximate" in million[1]
    huge = nb.resolve_backend(nb.KnnOptions(), 10**6, nb.APPROXIMATE_MIN_REFERENCE + 1)
    assert huge[0] == "ivf" and "approximate" in huge[1]
