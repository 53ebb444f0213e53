"""Facility location: erasus vs apricot (``apricot-select``) side by side in the same run.

Run: ``pytest benches/python/test_bench_submodular.py --benchmark-only --benchmark-group-by=group``
(``pip install 'erasus-unlearn[bench]'``). Both libraries optimize the same CRAIG similarity
``s = D_max - D`` (D Euclidean): apricot gets it precomputed (its own ``metric="euclidean"`` uses squared
distances, a different function), and for the kNN case apricot's own graph construction
(``KNeighborsTransformer``, as in ``apricot.utils``) with the CSR indices cast to int32, which gets past
its numba signature crash under current scipy (int64 indices). Each case also runs in a fresh
subprocess once to record peak RSS. ``ERASUS_BENCH_1M=1`` adds a single timed kNN run at n = 1e6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

apricot = pytest.importorskip("apricot")

D = 64


def mixture(n: int, d: int = D, seed: int = 0) -> np.ndarray:
    """Gaussian-mixture features (32 clusters), float32 C-contiguous."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-5, 5, (32, d))
    return (centers[rng.integers(0, 32, n)] + rng.standard_normal((n, d))).astype(np.float32)


def craig_cost(x: np.ndarray, sel: np.ndarray) -> float:
    """CRAIG's own goal, ``sum_i min_{j in S} ||x_i - x_j||`` over all points (lower is better)."""
    from sklearn.metrics import pairwise_distances_argmin_min

    return float(pairwise_distances_argmin_min(x, x[sel])[1].astype(np.float64).sum())


def dense_objective(x: np.ndarray, sel: np.ndarray) -> float:
    """``sum_i max_{j in S} (D_max - D_ij)`` with D_max over all pairs (float64)."""
    from sklearn.metrics import pairwise_distances

    xd = x.astype(np.float64)
    return float((pairwise_distances(xd).max() - pairwise_distances(xd, xd[sel]).min(axis=1)).sum())


def knn_objective(x: np.ndarray, sel: np.ndarray, k: int) -> float:
    """erasus' kNN objective: ``sum_i max(0, max_{j in S cap N_K(i)} (D_max - D_ij))``, D_max over kNN distances."""
    ids, dist = __import__("erasus")._core.knn_graph(x, k)
    dmax = float(dist.max())
    chosen = np.zeros(x.shape[0], bool)
    chosen[sel] = True
    s = np.where(chosen[ids], dmax - dist.astype(np.float64), 0.0)
    return float(s.max(axis=1).sum())


# ---------------------------------------------------------------------------------------- the two libraries


def erasus_dense(x: np.ndarray, k: int) -> np.ndarray:
    import erasus

    return erasus.select(x, k, "facility_location", optimizer="lazy").indices


def apricot_dense(x: np.ndarray, k: int) -> np.ndarray:
    from apricot import FacilityLocationSelection
    from sklearn.metrics import pairwise_distances

    dist = pairwise_distances(x)
    sim = dist.max() - dist
    return np.asarray(FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(sim).ranking)


def erasus_knn(x: np.ndarray, k: int, neighbors: int) -> np.ndarray:
    import erasus

    return erasus.select(x, k, "facility_location", neighbors=neighbors, optimizer="lazy").indices


def apricot_knn(x: np.ndarray, k: int, neighbors: int) -> np.ndarray:
    from apricot import FacilityLocationSelection
    from sklearn.neighbors import KNeighborsTransformer

    g = KNeighborsTransformer(n_neighbors=neighbors, metric="euclidean").fit_transform(x).tocsr()
    g.data = g.max() - g.data
    g.indices = g.indices.astype(np.int32)
    g.indptr = g.indptr.astype(np.int32)
    return np.asarray(FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(g).ranking)


# ---------------------------------------------------------------------------------------- peak memory


def peak_rss(call: str, n: int, k: int, neighbors: int | None = None) -> dict:
    """Runs one call in a fresh interpreter; returns wall and CPU seconds (user + system: this 2-core machine
    is shared, so CPU time is the steadier number), baseline and peak RSS (bytes) and the picks."""
    code = textwrap.dedent(f"""
        import json, resource, sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import numpy as np
        import test_bench_submodular as b
        x = b.mixture({n})
        args = (x, {k}) if {neighbors!r} is None else (x, {k}, {neighbors!r})
        import erasus  # imported before the baseline so both libraries start from the same process
        def status(key):  # VmHWM / VmRSS of this process (ru_maxrss would include the forking parent's peak)
            for line in open("/proc/self/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        base = status("VmRSS")
        t, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        sel = b.{call}(*args)
        secs = time.perf_counter() - t
        end = resource.getrusage(resource.RUSAGE_SELF)
        cpu_secs = (end.ru_utime - cpu.ru_utime) + (end.ru_stime - cpu.ru_stime)
        peak = status("VmHWM")
        np.save(sys.argv[1], np.asarray(sel, dtype=np.int64))
        print(json.dumps({{"seconds": secs, "cpu_seconds": cpu_secs, "baseline_rss": base, "peak_rss": peak}}))
    """)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sel.npy")
        res = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, check=True)
        info = json.loads(res.stdout.strip().splitlines()[-1])
        info["indices"] = np.load(out)
    return info


def record(benchmark, info: dict, **extra) -> None:
    benchmark.extra_info.update({
        "subprocess_seconds": round(info["seconds"], 3),
        "subprocess_cpu_seconds": round(info["cpu_seconds"], 3),
        "peak_rss_gb": round(info["peak_rss"] / 1e9, 3),
        "extra_rss_gb": round((info["peak_rss"] - info["baseline_rss"]) / 1e9, 3),
        **extra,
    })


# ---------------------------------------------------------------------------------------- the cases

DENSE = dict(n=10_000, k=1_000)
KNN = dict(n=50_000, k=5_000, neighbors=50)


@pytest.mark.benchmark(group="facility_location dense lazy n=10k d=64 k=1k")
@pytest.mark.parametrize("lib", ["erasus", "apricot"])
def test_dense_lazy(benchmark, lib: str) -> None:
    x = mixture(DENSE["n"])
    fn = erasus_dense if lib == "erasus" else apricot_dense
    sel = benchmark.pedantic(fn, args=(x, DENSE["k"]), rounds=3, iterations=1)
    info = peak_rss(f"{lib}_dense", DENSE["n"], DENSE["k"])
    np.testing.assert_array_equal(info["indices"], sel)
    record(benchmark, info, objective=dense_objective(x, sel), craig_cost=craig_cost(x, sel))


@pytest.mark.benchmark(group="facility_location kNN K=50 n=50k d=64 k=5k (graph build included)")
@pytest.mark.parametrize("lib", ["erasus", "apricot"])
def test_knn_lazy(benchmark, lib: str) -> None:
    x = mixture(KNN["n"])
    fn = erasus_knn if lib == "erasus" else apricot_knn
    sel = benchmark.pedantic(fn, args=(x, KNN["k"], KNN["neighbors"]), rounds=1, iterations=1)
    info = peak_rss(f"{lib}_knn", KNN["n"], KNN["k"], KNN["neighbors"])
    record(benchmark, info, knn_objective=knn_objective(x, sel, KNN["neighbors"]), craig_cost=craig_cost(x, sel))


@pytest.mark.skipif(os.environ.get("ERASUS_BENCH_1M") != "1", reason="set ERASUS_BENCH_1M=1 for the n = 1e6 run")
@pytest.mark.benchmark(group="facility_location kNN K=50 n=1e6 d=64 k=10k (erasus only)")
def test_knn_one_million(benchmark) -> None:
    info = benchmark.pedantic(peak_rss, args=("erasus_knn", 1_000_000, 10_000, 50), rounds=1, iterations=1)
    record(benchmark, info)
