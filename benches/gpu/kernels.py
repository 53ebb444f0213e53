"""GPU check + timing of every erasus kernel against its torch baseline, and of every GPU selection path
(``erasus.select`` on a CUDA tensor) against the Rust core on the host, in one call of under 5 minutes.

For each kernel: (1) correctness on the GPU against the torch twin in ``erasus.kernels.reference``
(bit-identical Philox matrices for the projections), (2) ``triton.testing.do_bench`` of the Triton kernel and
of the torch baseline (the twin: Philox in torch + matmul for the projections, eager foreach/elementwise ops
for SSD and Fisher), (3) achieved TFLOP/s or GB/s and the fraction of this card's *measured* peak (a large
bf16 matmul and a large device-to-device copy, measured first). Prints a markdown table; ``--out FILE`` also
writes it.

``--dry-run`` runs the same code path on CPU in Triton's interpreter at tiny sizes (timings meaningless) to
check the script's logic where no GPU is available.

    benches/gpu/run.sh                 # on a GPU machine (see run.sh)
    python benches/gpu/kernels.py --dry-run
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--dry-run", action="store_true", help="CPU + TRITON_INTERPRET=1 at tiny sizes")
ARGS.add_argument("--out", default=None, help="also write the markdown table here")
OPTS = ARGS.parse_args()
if OPTS.dry_run:
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first triton import

import torch  # noqa: E402

import erasus.kernels as K  # noqa: E402
from erasus.kernels import reference as R  # noqa: E402

DRY = OPTS.dry_run
DEV = torch.device("cpu" if DRY else "cuda")
BF16 = torch.float16 if DRY else torch.bfloat16  # the interpreter has no bfloat16


def bench(fn) -> float:
    """Median milliseconds of ``fn``."""
    if DRY:
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def measured_peaks() -> tuple[float, float]:
    """(bf16 matmul TFLOP/s, copy GB/s) measured on this device."""
    n = 256 if DRY else 8192
    a = torch.randn(n, n, device=DEV).to(BF16 if not DRY else torch.float32)
    b = torch.randn(n, n, device=DEV).to(a.dtype)
    ms = bench(lambda: a @ b)
    tflops = 2 * n**3 / ms / 1e9
    m = (1 << 16) if DRY else (1 << 28)
    x = torch.empty(m, dtype=torch.float32, device=DEV)
    y = torch.empty_like(x)
    ms_copy = bench(lambda: y.copy_(x))
    return tflops, 2 * 4 * m / ms_copy / 1e6


ROWS: list[tuple[str, str, str, float, float, str, str]] = []
FAILURES: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    if not ok:
        FAILURES.append(f"{name}: {detail}")
    print(f"  check {name}: {'ok' if ok else 'FAILED ' + detail}", flush=True)


def row(name: str, shape: str, dtype: str, t_ms: float, base_ms: float, work: float, unit: str, peak: float) -> None:
    rate = work / t_ms / (1e9 if unit == "TFLOP/s" else 1e6)
    ROWS.append((name, shape, dtype, t_ms, base_ms, f"{rate:.1f} {unit}", f"{100 * rate / peak:.0f}%"))
    print(f"  {name} {shape}: triton {t_ms:.3f} ms, torch {base_ms:.3f} ms, {rate:.1f} {unit}", flush=True)


def jl_cases(peak_tflops: float) -> None:
    from erasus.kernels.triton_kernels import jl as triton_jl

    print("jl_project", flush=True)
    for kind in ("rademacher", "gaussian"):
        got = triton_jl.jl_matrix(2**40 + 5, 300, 4100, kind=kind, device=DEV)
        check(f"R bit-identical ({kind})", torch.equal(got, R.jl_matrix(2**40 + 5, range(300), 4100, kind=kind,
                                                                          device=DEV)))
    g = torch.randn(8, 5000, device=DEV)
    for dtype in (torch.float32, BF16):
        err = (K.jl_project(g.to(dtype), 1000, seed=1, backend="triton")
               - R.jl_project(g.to(dtype), 1000, seed=1)).abs().max().item()
        check(f"jl_project vs twin ({dtype})", err < 1e-2 * max(1.0, g.abs().max().item()), f"max err {err}")
    # target shape: Triton only (the twin would regenerate 2^36 entries with torch ops)
    b, p = (4, 256) if DRY else (64, 4096)
    d = (1 << 12) if DRY else (1 << 24)
    x = torch.randn(b, d, device=DEV, dtype=BF16)
    t = bench(lambda: K.jl_project(x, p, seed=0, backend="triton"))
    row("jl_project rademacher", f"B={b} D=2^{d.bit_length() - 1} p={p}", str(BF16).split(".")[1], t, float("nan"),
        2 * b * d * p, "TFLOP/s", peak_tflops)
    # baseline comparison where the torch twin is affordable
    d_small = (1 << 10) if DRY else (1 << 18)
    xs = x[:, :d_small].contiguous()
    t = bench(lambda: K.jl_project(xs, p, seed=0, backend="triton"))
    base = bench(lambda: R.jl_project(xs, p, seed=0))
    row("jl_project rademacher", f"B={b} D=2^{d_small.bit_length() - 1} p={p}", str(BF16).split(".")[1], t, base,
        2 * b * d_small * p, "TFLOP/s", peak_tflops)


def factored_cases(peak_gbs: float) -> None:
    print("kronecker_project / ghost_norms", flush=True)
    b, t_len, d_in, d_out, r = (2, 20, 64, 48, 16) if DRY else (16, 512, 4096, 4096, 64)
    a = torch.randn(b, t_len, d_in, device=DEV, dtype=BF16)
    g = torch.randn(b, t_len, d_out, device=DEV, dtype=BF16)
    got = K.kronecker_project(a, g, r, r, seed=3, backend="triton")
    ref = R.kronecker_project(a, g, r, r, seed=3)
    err = ((got - ref).norm() / ref.norm()).item()
    check("kronecker_project vs twin", err < 1e-3, f"rel err {err}")
    bytes_moved = a.numel() * a.element_size() + g.numel() * g.element_size()
    t = bench(lambda: K.kronecker_project(a, g, r, r, seed=3, backend="triton"))
    base = bench(lambda: R.kronecker_project(a, g, r, r, seed=3))
    row("kronecker_project", f"B={b} T={t_len} {d_out}x{d_in} r={r}x{r}", str(BF16).split(".")[1], t, base,
        bytes_moved, "GB/s", peak_gbs)
    got = K.ghost_norms(a, g, backend="triton")
    ref = R.ghost_norms(a, g)
    err = ((got - ref).abs() / ref.abs()).max().item()
    check("ghost_norms vs twin", err < 1e-3, f"rel err {err}")
    t = bench(lambda: K.ghost_norms(a, g, backend="triton"))
    base = bench(lambda: R.ghost_norms(a, g))
    row("ghost_norms", f"B={b} T={t_len} d={d_in}/{d_out}", str(BF16).split(".")[1], t, base, bytes_moved, "GB/s",
        peak_gbs)


def _model_like(total: int, n_tensors: int) -> list[torch.Tensor]:
    sizes = [total // n_tensors + (7 * i) % 13 for i in range(n_tensors)]
    return [torch.randn(s, device=DEV) for s in sizes]


def multi_tensor_cases(peak_gbs: float) -> None:
    print("ssd_dampen_ / fisher_accumulate_", flush=True)
    total, n_tensors = ((1 << 16), 7) if DRY else ((1 << 28), 200)
    params = _model_like(total, n_tensors)
    full = [torch.rand_like(p) for p in params]
    forget = [torch.rand_like(p) * 2 for p in params]
    a, b = [p.clone() for p in params], [p.clone() for p in params]
    na = K.ssd_dampen_(a, full, forget, alpha=1.0, lam=0.5, backend="triton")
    nb = R.ssd_dampen_(b, full, forget, alpha=1.0, lam=0.5)
    check("ssd_dampen_ vs twin (count, bit-identical params)", na == nb and all(torch.equal(x, y) for x, y in zip(a, b)))
    n = sum(p.numel() for p in params)
    frac = na / n
    # lam = 10 keeps most factors at 1, so repeated timing runs do not drive parameters to zero
    t = bench(lambda: K.ssd_dampen_(a, full, forget, alpha=1.0, lam=10.0, backend="triton"))
    base = bench(lambda: R.ssd_dampen_(b, full, forget, alpha=1.0, lam=10.0))
    row("ssd_dampen_", f"{n_tensors} tensors, {n / 1e6:.0f}M", "float32", t, base, n * (12 + 4 * frac), "GB/s",
        peak_gbs)
    acc_a = [torch.zeros_like(p) for p in params]
    acc_b = [torch.zeros_like(p) for p in params]
    K.fisher_accumulate_(acc_a, params, weight=0.5, backend="triton")
    R.fisher_accumulate_(acc_b, params, weight=0.5)
    err = max((x - y).abs().max().item() for x, y in zip(acc_a, acc_b))
    check("fisher_accumulate_ vs twin", err < 1e-5, f"max err {err}")
    t = bench(lambda: K.fisher_accumulate_(acc_a, params, weight=0.5, backend="triton"))
    base = bench(lambda: R.fisher_accumulate_(acc_b, params, weight=0.5))
    row("fisher_accumulate_", f"{n_tensors} tensors, {n / 1e6:.0f}M", "float32", t, base, n * 12, "GB/s", peak_gbs)


def _mixture(n: int, d: int, clusters: int = 50, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=10.0, size=(clusters, d))
    return (centers[rng.integers(clusters, size=n)] + rng.normal(size=(n, d))).astype(np.float32)


def _wall(fn):
    """(result, seconds) of one call; GPU work is synchronized before the clock stops."""
    if not DRY:
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if not DRY:
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def selection_cases(peak_tflops: float, peak_gbs: float) -> None:
    """``erasus.select`` on a CUDA tensor (the torch twin, selected on the device) against the Rust core on this
    machine's CPU cores, one call each (the Rust side is the baseline): same picks up to float ties."""
    import numpy as np

    import erasus

    print("selection: torch twin on the device vs the Rust core on the host", flush=True)
    n, d, k = (3000, 16, 30) if DRY else (200_000, 64, 2000)
    n_dense, k_dense = (800, 20) if DRY else (20_000, 1000)
    x = _mixture(n, d)
    x_dense = np.ascontiguousarray(x[:n_dense])
    cases = [
        ("kcenter", x, k, {}, k * x.nbytes, "GB/s"),
        ("herding", x, k, {}, k * x.nbytes, "GB/s"),
        ("kmeans", x, k // 10, {"max_iter": 20}, 2.0 * n * (k // 10) * d * 21, "TFLOP/s"),
        ("facility_location", x_dense, k_dense, {}, 2.0 * n_dense**2 * d, "TFLOP/s"),
        ("facility_location", x, k, {"neighbors": 50}, 2.0 * n * n * d, "TFLOP/s"),
    ]
    for method, data, kk, opts, work, unit in cases:
        label = method + (" kNN K=50" if "neighbors" in opts else " dense" if method == "facility_location" else "")
        host, t_host = _wall(lambda: erasus.select(data, kk, method=method, backend="rust", **opts))
        dev_x = torch.from_numpy(data).to(DEV)
        call = (lambda: erasus.select(dev_x, kk, method=method, **opts)) if not DRY else (
            lambda: erasus.select(dev_x, kk, method=method, backend="torch", **opts))
        call()  # warm-up: CUDA context, cuBLAS handles, allocator
        got, t_dev = _wall(call)
        same = got.indices == host.indices
        first = int(np.argmin(same)) if not same.all() else len(same)
        overlap = np.intersect1d(got.indices, host.indices).size / len(host.indices)
        rel = abs(got.objective - host.objective) / max(abs(host.objective), 1e-30)
        check(f"{label} device vs Rust", rel < 1e-3 and overlap >= 0.9,
              f"objective rel diff {rel:.1e}, set overlap {overlap:.3f}, first differing pick {first}")
        print(f"    {label}: identical prefix {first}/{len(same)} picks, set overlap {overlap:.3f}, "
              f"objective rel diff {rel:.1e}", flush=True)
        peak = peak_gbs if unit == "GB/s" else peak_tflops
        row(f"select {label}", f"n={data.shape[0]} d={d} k={kk}", "float32", t_dev * 1e3, t_host * 1e3,
            work, unit, peak)


def main() -> int:
    if not DRY and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or use --dry-run", file=sys.stderr)
        return 2
    import triton

    card = "CPU (interpreter dry run)" if DRY else torch.cuda.get_device_name()
    start = time.perf_counter()
    peak_tflops, peak_gbs = measured_peaks()
    print(f"{card}: measured peak {peak_tflops:.0f} TFLOP/s (bf16 matmul), {peak_gbs:.0f} GB/s (copy)", flush=True)
    jl_cases(peak_tflops)
    factored_cases(peak_gbs)
    multi_tensor_cases(peak_gbs)
    selection_cases(peak_tflops, peak_gbs)
    lines = [
        f"card: {card}; torch {torch.__version__}; triton {triton.__version__}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"measured peaks: {peak_tflops:.0f} TFLOP/s bf16 matmul, {peak_gbs:.0f} GB/s device copy",
        "",
        "selection rows: 'triton ms' is the torch twin on the device, 'torch ms' the Rust core on the host CPU "
        f"({os.cpu_count()} cores), one call each; TFLOP/s rows are fp32 work against the bf16 peak",
        "",
        "| kernel | shape | dtype | triton ms | torch ms | speed-up | achieved | of peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, shape, dtype, t, base, rate, frac in ROWS:
        speed = f"{base / t:.1f}x" if base == base else "n/a"
        base_s = f"{base:.3f}" if base == base else "n/a"
        lines.append(f"| {name} | {shape} | {dtype} | {t:.3f} | {base_s} | {speed} | {rate} | {frac} |")
    lines.append("")
    lines.append(f"checks: {'all passed' if not FAILURES else '; '.join(FAILURES)}; "
                 f"wall {time.perf_counter() - start:.0f} s")
    table = "\n".join(lines)
    print("\n" + table)
    if OPTS.out:
        with open(OPTS.out, "w") as f:
            f.write(table + "\n")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
