"""`import erasus` must take < 0.5 s: measured in fresh interpreters, beside `import numpy` (its floor)."""

import subprocess
import sys


def _fresh_import(module: str) -> None:
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


def test_import_numpy_baseline(benchmark):
    benchmark.pedantic(_fresh_import, args=("numpy",), rounds=5, iterations=1)


def test_import_erasus(benchmark):
    benchmark.pedantic(_fresh_import, args=("erasus",), rounds=5, iterations=1)


def test_import_erasus_in_process_time():
    """Import time of erasus itself (-X importtime), excluding interpreter start-up, printed for the record."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import erasus"], capture_output=True, text=True,
                         check=True).stderr.splitlines()
    total_us = next(int(line.split("|")[1]) for line in reversed(out) if line.rstrip().endswith("erasus"))
    print(f"\nimport erasus (cumulative, -X importtime): {total_us / 1e6:.3f} s")
