"""The honest side-by-side benchmark harness behind every speed claim in ``benches/``.

    python benches/harness.py --all               # every case, one table (about 5 minutes on an idle 2-core machine)
    python benches/harness.py kcenter-mixture herding-mixture --rounds 5
    python benches/harness.py --list

Protocol, so that a ratio cannot come from the measurement instead of the code:

* every (case, implementation, thread count) runs in a **fresh process** (no warm state shared with the
  other side), the implementations **alternate** inside each round (the order flips every round), and
  there are several rounds; the table shows the best and the median wall time;
* each side runs on **1 thread and on every core** (erasus through ``ERASUS_NUM_THREADS``, BLAS through
  ``threadpoolctl``); a side's wall time is its best over the thread counts (OpenBLAS' two spinning GEMV
  threads once made numpy 100x slower while another job held a core). The **1-thread CPU time**
  (``time.process_time``) is printed for both sides: it moves far less with other jobs on the machine;
* baselines run with ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` removed from their environment (those old
  workarounds slow a current OpenBLAS down) and the BLAS kernel that ran is printed;
* the **load average and core count** are printed with the table; a start above ``MAX_LOAD`` is refused
  (``--allow-loaded`` runs anyway and flags every row taken under load);
* the machine's **stream read bandwidth and SGEMM rate** are measured first, and each row prints what it
  achieved (GB/s or GFLOP/s of the *naive* algorithm's work) as a fraction of that peak: a baseline far
  below arithmetic, or a rate above the peak that pruning does not explain, is a measurement bug;
* objectives of the implementations are printed side by side and must agree;
* one-time costs stay outside the timing: the child loads erasus' selector registry (which imports every
  built-in selector module) before the clock starts, for every implementation alike. The first ``select``
  in a fresh process used to include that import — 1.5-2 s once a selector module imported torch at module
  level — which made erasus look 3-6x slower than it is (k-center 1.73 s instead of 0.29 s, 2026-12-02).

Adding a case is one function: decorate ``def my_case(impl: str) -> Prepared`` with ``@case(...)``; it
builds its data (untimed) and returns the callable to time, the work it represents and its working set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

MAX_LOAD = 1.5
HERE = os.path.abspath(__file__)
# Workarounds for old OpenBLAS bugs that slow down current OpenBLAS: removed for baseline processes only.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Working sets up to this size are compared with the cache-resident stream rate, larger ones with DRAM's.
CACHED_WORKING_SET = 64 << 20


@dataclass(frozen=True)
class Prepared:
    """What a case hands the harness: ``run`` is timed (it returns the objective, compared across sides)."""

    run: Callable[[], float]
    work: float
    unit: Literal["GB", "GFLOP"]
    working_set: int
    note: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    prepare: Callable[[str], Prepared]
    impls: tuple[str, ...]
    description: str
    rounds: int | None = None
    threads: tuple[int, ...] | None = None


CASES: dict[str, Case] = {}


def case(
    name: str,
    *,
    impls: Sequence[str],
    description: str,
    rounds: int | None = None,
    threads: Sequence[int] | None = None,
) -> Callable[[Callable[[str], Prepared]], Callable[[str], Prepared]]:
    """Registers a case; ``impls[0]`` is erasus, the rest are baselines (run with the BLAS env cleaned)."""

    def register(fn: Callable[[str], Prepared]) -> Callable[[str], Prepared]:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} is registered twice")
        CASES[name] = Case(name, fn, tuple(impls), description, rounds, None if threads is None else tuple(threads))
        return fn

    return register


# ---------------------------------------------------------------------------------------------- data


def mixture(n: int, d: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Gaussian mixture: centres N(0, 10^2 I), unit noise (the data of benches/python/test_bench_geometry.py)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(clusters, d))
    return (centers[rng.integers(clusters, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def isotropic(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- references


def kcenter_numpy(x: np.ndarray, k: int, first: int) -> tuple[np.ndarray, float]:
    """Textbook greedy k-center, one BLAS GEMV per step: ||x||^2 - 2 X c + ||c||^2 (in x's dtype)."""
    sq = np.einsum("ij,ij->i", x, x)
    mind = np.full(x.shape[0], np.inf, dtype=x.dtype)
    picks = np.empty(k, dtype=np.int64)
    np.minimum(mind, np.maximum(sq - 2.0 * (x @ x[first]) + sq[first], 0), out=mind)
    mind[first] = -np.inf
    for t in range(k):
        c = int(np.argmax(mind))
        picks[t] = c
        np.minimum(mind, np.maximum(sq - 2.0 * (x @ x[c]) + sq[c], 0), out=mind)
        mind[c] = -np.inf
    return picks, float(np.sqrt(mind.max()))


def herding_numpy(x: np.ndarray, k: int) -> np.ndarray:
    """Herding by one GEMV per step: argmin_x ||x||^2 - 2 x.r with r = (t+1) mean - sum_S."""
    mean = x.astype(np.float64).mean(0)
    sq = np.einsum("ij,ij->i", x, x)
    total = np.zeros(x.shape[1])
    score = np.empty(x.shape[0], dtype=np.float32)
    free = np.ones(x.shape[0], dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    for t in range(k):
        r = ((t + 1) * mean - total).astype(np.float32)
        np.subtract(sq, 2.0 * (x @ r), out=score)
        score[~free] = np.inf
        i = int(np.argmin(score))
        picks[t] = i
        free[i] = False
        total += x[i]
    return picks


def moment_error(x: np.ndarray, picks: np.ndarray) -> float:
    return float(np.linalg.norm(x[picks].astype(np.float64).mean(0) - x.astype(np.float64).mean(0)))


def knn_numpy(x: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force exact kNN the way sklearn's brute backend does it: a BLAS SGEMM per row block
    (``|x|^2 + |y|^2 - 2 x y``) and ``argpartition`` for the top-K."""
    sq = np.einsum("ij,ij->i", x, x)
    n = x.shape[0]
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    for r0 in range(0, n, block):
        d2 = sq[r0 : r0 + block, None] + sq[None, :] - 2.0 * (x[r0 : r0 + block] @ x.T)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(vals, axis=1, kind="stable")
        idx[r0 : r0 + block] = np.take_along_axis(part, order, axis=1)
        dist[r0 : r0 + block] = np.sqrt(np.maximum(np.take_along_axis(vals, order, axis=1), 0))
    return idx, dist


# ---------------------------------------------------------------------------------------------- cases


def _kcenter_case(x: np.ndarray, k: int, impl: str) -> Prepared:
    n, d = x.shape
    work = k * n * d * 4 / 1e9  # the naive greedy reads X once per pick
    if impl == "erasus":
        import erasus

        def run() -> float:
            return float(erasus.select(x, k, method="kcenter", initial=[0]).objective)

        return Prepared(run, work, "GB", x.nbytes, "naive-equivalent bytes: pruning lets erasus pass 100%")
    return Prepared(lambda: kcenter_numpy(x, k, 0)[1], work, "GB", x.nbytes)


@case("kcenter-mixture", impls=("erasus", "numpy"),
      description="k-center, 50-cluster mixture, n=50k d=64 k=5k, initial=[0]")
def kcenter_mixture(impl: str) -> Prepared:
    return _kcenter_case(mixture(50_000, 64, 50), 5_000, impl)


@case("kcenter-isotropic", impls=("erasus", "numpy"),
      description="k-center, isotropic N(0, I), n=50k d=64 k=5k, initial=[0]")
def kcenter_isotropic(impl: str) -> Prepared:
    return _kcenter_case(isotropic(50_000, 64), 5_000, impl)


@case("kcenter-1e6", impls=("erasus",), rounds=1, threads=(0,),
      description="k-center, 50-cluster mixture, n=1e6 d=64 k=1e4 (target <= 30 s; numpy would take minutes)")
def kcenter_1e6(impl: str) -> Prepared:
    return _kcenter_case(mixture(1_000_000, 64, 50), 10_000, impl)


@case("herding-mixture", impls=("erasus", "numpy"),
      description="herding, 37-cluster mixture, n=30k d=96 k=800")
def herding_mixture(impl: str) -> Prepared:
    x, k = mixture(30_000, 96, 37), 800
    work = k * x.nbytes / 1e9
    if impl == "erasus":
        import erasus

        return Prepared(lambda: float(erasus.select(x, k, method="herding").objective), work, "GB", x.nbytes)
    return Prepared(lambda: moment_error(x, herding_numpy(x, k)), work, "GB", x.nbytes)


@case("knn-graph", impls=("erasus", "numpy"),
      description="exact kNN graph, K=50, 50-cluster mixture, n=20k d=64 (objective: mean K-th distance)")
def knn_graph(impl: str) -> Prepared:
    x, k = mixture(20_000, 64, 50), 50
    n, d = x.shape
    flops = 2.0 * n * n * d / 1e9  # the all-pairs GEMM (erasus computes half of it: symmetric tiles)
    if impl == "erasus":
        from erasus import _core

        return Prepared(lambda: float(_core.knn_graph(x, k)[1][:, -1].mean()), flops, "GFLOP", x.nbytes,
                        "all-pairs flops; erasus computes each symmetric tile once")
    return Prepared(lambda: float(knn_numpy(x, k)[1][:, -1].mean()), flops, "GFLOP", x.nbytes)


def _craig_similarity_dense(x: np.ndarray) -> np.ndarray:
    from sklearn.metrics import pairwise_distances

    dist = pairwise_distances(x)
    return dist.max() - dist


@case("facility-dense", impls=("erasus", "apricot"),
      description="facility location, dense CRAIG s = D_max - D, lazy greedy, 32-cluster mixture, n=10k d=64 k=1k")
def facility_dense(impl: str) -> Prepared:
    x, k = mixture(10_000, 64, 32), 1_000
    n, d = x.shape
    flops = 2.0 * n * n * d / 1e9  # the n x n kernel's GEMM (the greedy is memory-bound on the kernel)
    if impl == "erasus":
        import erasus

        return Prepared(lambda: float(erasus.select(x, k, method="facility_location").objective), flops, "GFLOP",
                        4 * n * n, "f(S) from the greedy's gains")

    def run() -> float:
        from apricot import FacilityLocationSelection

        sim = _craig_similarity_dense(x)  # apricot's metric="euclidean" is squared: the similarity is passed in
        picks = np.asarray(FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(sim).ranking)
        return float(sim[:, picks].max(axis=1).astype(np.float64).sum())

    return Prepared(run, flops, "GFLOP", 8 * n * n, "f(S) of apricot's picks, float64 kernel")


@case("facility-knn", impls=("erasus", "apricot"),
      description="facility location on the exact K=50 graph (built inside the timing), 32-cluster mixture, "
                  "n=50k d=64 k=5k")
def facility_knn(impl: str) -> Prepared:
    x, k, kn = mixture(50_000, 64, 32), 5_000, 50
    n, d = x.shape
    flops = 2.0 * n * n * d / 1e9
    if impl == "erasus":
        import erasus

        return Prepared(lambda: float(erasus.select(x, k, method="facility_location", neighbors=kn).objective),
                        flops, "GFLOP", x.nbytes, "all-pairs flops of the graph; kNN f(S) from the greedy's gains")

    def run() -> float:
        from apricot import FacilityLocationSelection
        from sklearn.neighbors import KNeighborsTransformer

        # as apricot.utils builds it, with int32 CSR indices (its numba kernel refuses int64)
        g = KNeighborsTransformer(n_neighbors=kn - 1, metric="euclidean").fit_transform(x).tocsr()
        g.data = g.data.max() - g.data
        g.indices, g.indptr = g.indices.astype(np.int32), g.indptr.astype(np.int32)
        picks = np.asarray(FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(g).ranking)
        return float(g[:, picks].max(axis=1).toarray().astype(np.float64).sum())

    return Prepared(run, flops, "GFLOP", x.nbytes, "kNN f(S) on apricot's own graph")


# ---------------------------------------------------------------------------------------------- peaks


def _limit_blas(threads: int) -> dict[str, object]:
    """Caps BLAS at ``threads`` and returns what threadpoolctl reports about it (the kernel that runs)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(threads)
    info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return {k: info[0].get(k) for k in ("internal_api", "version", "architecture", "num_threads")} if info else {}


def measure_peaks(threads: int) -> dict[str, float]:
    """Stream read rate (GB/s) of a DRAM-sized and a cache-sized array, and the SGEMM rate (GFLOP/s)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    def read_rate(nbytes: int, repeats: int, passes: int) -> float:
        """Best of a SIMD sum and a BLAS dot over ``threads`` slices (both release the GIL), 1 BLAS thread each.

        Each timed task reads its slice ``passes`` times: a cache-sized slice is read in ~0.2 ms, about what
        handing a task to the thread pool costs, and timing single passes made the cache rate read 2-3x low
        (the 2026-12-02 tables printed 150-450% "of peak" for L3-resident rows because of it)."""
        a = np.random.default_rng(1).random(nbytes // 4, dtype=np.float32)
        parts = np.array_split(a, threads)
        best = float("inf")
        with ThreadPoolExecutor(threads) as pool, threadpool_limits(1):
            for kernel in (np.sum, lambda p: np.dot(p, p)):
                def task(p: np.ndarray, kernel: Callable[[np.ndarray], object] = kernel) -> None:
                    for _ in range(passes):
                        kernel(p)

                for _ in range(repeats):
                    t0 = time.perf_counter()
                    list(pool.map(task, parts))
                    best = min(best, time.perf_counter() - t0)
        return nbytes * passes / best / 1e9

    m = 2048
    a = np.random.default_rng(0).normal(size=(m, m)).astype(np.float32)
    a @ a
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return {
        "stream_dram": read_rate(512 << 20, 3, 1),
        "stream_cached": read_rate(16 << 20, 10, 16),
        "sgemm": 2.0 * m**3 / best / 1e9,
    }


# ---------------------------------------------------------------------------------------------- child


def child(name: str, impl: str, threads: int) -> dict[str, object]:
    """Runs one (case, impl, threads) in this fresh process; the harness parent reads the JSON it prints."""
    blas = _limit_blas(threads) if impl != "erasus" else {}
    if name == "peaks":
        return {"peaks": measure_peaks(threads), "blas": blas}
    prepared = CASES[name].prepare(impl)
    import erasus

    erasus.list_selectors()  # the lazy registry import happens here, not inside the timed call
    t0, c0 = time.perf_counter(), time.process_time()
    objective = prepared.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "objective": objective, "work": prepared.work, "unit": prepared.unit,
            "working_set": prepared.working_set, "note": prepared.note, "blas": blas}


# ---------------------------------------------------------------------------------------------- parent


@dataclass
class Runs:
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    objectives: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)


def spawn(name: str, impl: str, threads: int) -> tuple[dict[str, object], float]:
    env = dict(os.environ)
    if impl == "erasus":
        env["ERASUS_NUM_THREADS"] = str(threads)
    else:
        for var in OPENBLAS_OVERRIDES:
            env.pop(var, None)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, HERE, "--child", name, impl, str(threads)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{name}/{impl}/{threads} threads failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result, max(load, os.getloadavg()[0])


def run_case(c: Case, rounds: int, threads: tuple[int, ...]) -> dict[tuple[str, int], Runs]:
    configs = [(impl, t) for impl in c.impls for t in threads]
    runs = {cfg: Runs() for cfg in configs}
    for r in range(c.rounds or rounds):
        for impl, t in configs if r % 2 == 0 else configs[::-1]:
            result, load = spawn(c.name, impl, t)
            rec = runs[(impl, t)]
            rec.walls.append(float(result["wall"]))
            rec.cpus.append(float(result["cpu"]))
            rec.objectives.append(float(result["objective"]))
            rec.loads.append(load)
            rec.info = result
            print(f"  {c.name:18} {impl:8} {t} thr  wall {result['wall']:8.3f} s  cpu {result['cpu']:8.3f} s"
                  f"  load {load:.2f}", file=sys.stderr, flush=True)
    return runs


def fmt_rate(value: float, unit: str, peak: float) -> str:
    return f"{value:8.1f} {'GB/s' if unit == 'GB' else 'GF/s'} {100 * value / peak:5.0f}%"


def report(peaks: dict[int, dict[str, float]], blas: dict[str, object], results: dict[str, dict[tuple[str, int], Runs]],
           threads: tuple[int, ...]) -> str:
    cores = os.cpu_count() or 1
    lines = [f"machine: {cores} cores, load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"baseline BLAS: {blas}"]
    for t, p in sorted(peaks.items()):
        lines.append(f"peaks at {t} thread(s): stream read {p['stream_dram']:.1f} GB/s (512 MiB), "
                     f"{p['stream_cached']:.1f} GB/s (16 MiB, cache), SGEMM {p['sgemm']:.1f} GFLOP/s")
    lines.append("")
    head = (f"{'case':18} {'impl':8} {'best wall':>10} {'median':>8} {'thr':>3} {'cpu 1thr':>9} "
            f"{'rate (of peak)':>20} {'objective':>14} {'max load':>8}  notes")
    lines += [head, "-" * len(head)]
    for name, runs in results.items():
        c = CASES[name]
        best: dict[str, tuple[float, int]] = {}
        cpu1: dict[str, float] = {}
        for (impl, t), rec in runs.items():
            w = min(rec.walls)
            if impl not in best or w < best[impl][0]:
                best[impl] = (w, t)
            if t == 1:
                cpu1[impl] = min(rec.cpus)
        for impl in c.impls:
            w, t = best[impl]
            rec = runs[(impl, t)]
            info = rec.info
            unit = str(info["unit"])
            tt = t if t > 0 else cores
            p = peaks.get(tt) or peaks[max(peaks)]
            peak = p["sgemm"] if unit == "GFLOP" else (
                p["stream_cached"] if int(info["working_set"]) <= CACHED_WORKING_SET else p["stream_dram"])
            load = max(max(r.loads) for r in runs.values())
            flags = [str(info["note"])] if info["note"] else []
            if load > MAX_LOAD:
                flags.insert(0, "LOADED")
            cpu = f"{cpu1[impl]:9.3f}" if impl in cpu1 else f"{'-':>9}"
            lines.append(f"{name:18} {impl:8} {w:10.3f} {statistics.median(rec.walls):8.3f} {tt:3d} {cpu} "
                         f"{fmt_rate(float(info['work']) / w, unit, peak):>20} {statistics.median(rec.objectives):14.6f} "
                         f"{load:8.2f}  {'; '.join(flags)}")
        if len(c.impls) > 1:
            e = c.impls[0]
            for base in c.impls[1:]:
                wall_ratio = best[base][0] / best[e][0]
                cpu_ratio = cpu1[base] / cpu1[e] if base in cpu1 and e in cpu1 else float("nan")
                ob, oe = statistics.median(runs[(base, best[base][1])].objectives), statistics.median(
                    runs[(e, best[e][1])].objectives)
                rel = abs(ob - oe) / max(abs(ob), 1e-30)
                lines.append(f"{'':18} {e} / {base}: {wall_ratio:.2f}x faster by best wall, {cpu_ratio:.2f}x by "
                             f"1-thread CPU time; objectives differ by {rel:.1e} (relative)")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="case names (see --list)")
    ap.add_argument("--all", action="store_true", help="run every case")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per case (default 3)")
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}",
                    help="comma-separated thread counts for every side (default 1 and all cores)")
    ap.add_argument("--allow-loaded", action="store_true",
                    help=f"run even if the load average is above {MAX_LOAD} (rows are then flagged LOADED)")
    ap.add_argument("--json", help="also write the raw measurements here")
    ap.add_argument("--child", nargs=3, metavar=("CASE", "IMPL", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        name, impl, threads = args.child
        print(json.dumps(child(name, impl, int(threads))))
        return 0
    if args.list:
        for c in CASES.values():
            print(f"{c.name:18} {', '.join(c.impls):24} {c.description}")
        return 0
    names = list(CASES) if args.all else args.cases
    unknown = [n for n in names if n not in CASES]
    if not names or unknown:
        ap.error(f"unknown case(s) {unknown}; expected some of {list(CASES)} or --all" if unknown
                 else "name at least one case, or pass --all")
    load = os.getloadavg()[0]
    if load > MAX_LOAD and not args.allow_loaded:
        print(f"refusing to benchmark: load average {load:.2f} > {MAX_LOAD} on {os.cpu_count()} cores "
              f"(other jobs would set the numbers); rerun when idle, or pass --allow-loaded to flag the rows",
              file=sys.stderr)
        return 2
    threads = tuple(sorted({int(t) for t in args.threads.split(",")}))
    peaks: dict[int, dict[str, float]] = {}
    blas: dict[str, object] = {}
    for t in threads:
        result, _ = spawn("peaks", "numpy", t)
        peaks[t], blas = result["peaks"], result["blas"]  # type: ignore[assignment]
    results = {}
    for name in names:
        c = CASES[name]
        case_threads = tuple(t if t > 0 else max(threads) for t in (c.threads or threads))
        results[name] = run_case(c, args.rounds, case_threads)
    table = report(peaks, blas, results, threads)
    print(table)
    if args.json:
        raw = {name: {f"{impl}/{t}": vars(rec) for (impl, t), rec in runs.items()} for name, runs in results.items()}
        with open(args.json, "w") as f:
            json.dump({"peaks": peaks, "blas": blas, "results": raw, "table": table}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
