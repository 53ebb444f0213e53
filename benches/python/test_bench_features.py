"""Per-sample gradient features on CPU: LoGra "kronecker" vs generic torch.func vmap + dense JL projection,
in the same run, on a 4-layer MLP of width 1024 (3.16 M parameters).

Run with ``pytest benches/python/test_bench_features.py --benchmark-only -s``; the summary printed at the end
(median seconds per call and the speed-up) is what benches/README.md records. Sizes: n = ERASUS_BENCH_FEAT_N
(default 32) samples, proj_dim = 1024.
"""

from __future__ import annotations

import os
import statistics

import pytest
import torch
from torch import nn

import erasus.features as feats

N = int(os.environ.get("ERASUS_BENCH_FEAT_N", "32"))
WIDTH, PROJ = 1024, 1024
ROUNDS = int(os.environ.get("ERASUS_BENCH_ROUNDS", "3"))
MEDIANS: dict[str, float] = {}


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                          nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, 10))
    x, y = torch.randn(N, WIDTH), torch.randint(0, 10, (N,))
    return model, (x, y)


MODEL, DATA = _setup()
CASES = {
    "kronecker (hooks + LoGra)": dict(projection="kronecker", method="auto"),
    "generic vmap + dense rademacher": dict(projection="rademacher", method="vmap"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_per_sample_gradient_features(benchmark, case):
    benchmark.group = "per-sample features, 4-layer MLP width 1024"

    def run():
        return feats.per_sample_gradients(MODEL, DATA, proj_dim=PROJ, seed=0, batch_size=N, progress=False,
                                          **CASES[case])

    out = benchmark.pedantic(run, rounds=ROUNDS if "kronecker" in case else 1, iterations=1)
    assert out.shape == (N, PROJ) and torch.isfinite(out).all()
    MEDIANS[case] = statistics.median(benchmark.stats.stats.data)
    if len(MEDIANS) == len(CASES):
        _summary()


def _summary() -> None:
    kron, generic = (MEDIANS[c] for c in CASES)
    print(f"\n[features] n={N} proj_dim={PROJ} threads={torch.get_num_threads()}: kronecker {kron:.3f} s, "
          f"generic vmap+dense {generic:.3f} s, speed-up {generic / kron:.1f}x")
