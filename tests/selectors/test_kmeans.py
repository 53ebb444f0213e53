"""k-means coreset against scikit-learn's inertia and float64 nearest-row references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

import erasus
from erasus.errors import ErasusTypeError, InvalidInputError


def blobs(seed: int, sizes: tuple[int, ...], d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=30, size=(len(sizes), d))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(labels)
    return (centers[labels] + rng.normal(size=(labels.size, d))).astype(np.float32), labels


def test_separated_blobs_give_one_medoid_per_blob() -> None:
    x, labels = blobs(0, (50, 120, 80, 30))
    sel = erasus.select(x, 4, method="kmeans", seed=3)
    assert sorted(labels[sel.indices].tolist()) == [0, 1, 2, 3]
    assert dict(zip(labels[sel.indices].tolist(), sel.weights.tolist())) == {0: 50, 1: 120, 2: 80, 3: 30}
    x64 = x.astype(np.float64)
    for i in sel.indices:
        members = x64[labels == labels[i]]
        nearest = np.flatnonzero(labels == labels[i])[np.argmin(((members - members.mean(0)) ** 2).sum(1))]
        assert i == nearest
    reference = KMeans(4, n_init=10, random_state=0).fit(x64).inertia_
    assert sel.objective == pytest.approx(reference, rel=1e-4)


def test_weights_sum_to_n_and_indices_distinct() -> None:
    x = np.random.default_rng(1).integers(0, 3, size=(300, 2)).astype(np.float32)  # many duplicate rows
    sel = erasus.select(x, 20, method="kmeans", seed=0)
    assert len(set(sel.indices.tolist())) == 20
    assert sel.weights.sum() == 300 and sel.weights.dtype == np.float32
    assert sel.gains is None


def test_inertia_not_worse_than_seeding_only_and_deterministic() -> None:
    x = np.random.default_rng(2).normal(size=(2000, 8)).astype(np.float32)
    seeded = erasus.select(x, 10, method="kmeans", seed=4, max_iter=0)
    lloyd = erasus.select(x, 10, method="kmeans", seed=4)
    assert lloyd.objective <= seeded.objective
    assert erasus.select(x, 10, method="kmeans", seed=4).indices.tolist() == lloyd.indices.tolist()
    x64 = x.astype(np.float64)
    # The objective is the inertia of the final centroids; for a converged run it is close to sklearn's.
    assert lloyd.objective <= 1.05 * KMeans(10, n_init=3, random_state=0).fit(x64).inertia_


def test_bad_options() -> None:
    with pytest.raises(InvalidInputError, match="max_iter"):
        erasus.get_selector("kmeans", max_iter=-1)
    with pytest.raises(ErasusTypeError, match="max_iter"):
        erasus.get_selector("kmeans", max_iter=2.5)
    with pytest.raises(InvalidInputError, match="tol"):
        erasus.get_selector("kmeans", tol=float("nan"))
