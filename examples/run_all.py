"""Run every example with ``--tiny`` (each in its own process) and fail if any fails: the CI check that the
examples keep working (``make test-docs``).

    python examples/run_all.py [--jobs 2] [--timeout 900] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def examples() -> list[Path]:
    """Every script under a family folder: files with a ``__main__`` guard. Modules without one (``common.py``,
    the entry points a benchmark config names) are imported by others, not run."""
    return sorted(p for p in HERE.glob("*/*.py") if 'if __name__ == "__main__":' in p.read_text())


def run(path: Path, timeout: float) -> tuple[Path, bool, str, float]:
    # one torch thread per example: tiny models gain nothing from more, and --jobs examples share the cores
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(path), "--tiny"], cwd=HERE.parent, env=env, capture_output=True,
                              text=True, timeout=timeout)
        ok, out = proc.returncode == 0, proc.stdout + proc.stderr
        status = "ok" if ok else f"FAILED (exit {proc.returncode})"
    except subprocess.TimeoutExpired as exc:
        ok, status = False, f"FAILED (timeout after {timeout:.0f} s)"
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    return path, ok, status if ok else status + "\n" + "\n".join("    " + s for s in out.strip().splitlines()[-40:]), \
        time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2, help="examples run at once")
    p.add_argument("--timeout", type=float, default=900, help="seconds per example")
    p.add_argument("--only", nargs="*", default=None, help="run only examples whose file name contains one of these")
    args = p.parse_args()
    chosen = [e for e in examples() if not args.only or any(s in e.name for s in args.only)]
    if not chosen or args.jobs < 1:
        print("no example matched" if not chosen else "--jobs must be >= 1", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    failed = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for path, ok, status, seconds in pool.map(lambda e: run(e, args.timeout), chosen):
            print(f"{str(path.relative_to(HERE)):50s} {seconds:6.1f} s  {status}", flush=True)
            if not ok:
                failed.append(path)
    print(f"{len(chosen) - len(failed)} of {len(chosen)} examples passed in {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
