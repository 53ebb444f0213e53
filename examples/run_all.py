"""Run every example with ``--tiny`` (each in its own process) and fail if any fails: the CI check that the
examples keep working (``make test-docs``).

    python examples/run_all.py [--timeout 600] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# shared modules that the scripts beside them import; not examples themselves
HELPERS = {"common.py", "run_all.py"}


def examples() -> list[Path]:
    return sorted(p for p in HERE.glob("*/*.py") if p.name not in HELPERS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=600, help="seconds per example")
    p.add_argument("--only", nargs="*", default=None, help="run only examples whose file name contains one of these")
    args = p.parse_args()
    chosen = [e for e in examples() if not args.only or any(s in e.name for s in args.only)]
    if not chosen:
        print("no example matched", file=sys.stderr)
        return 1
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1",
           "TQDM_DISABLE": "1"}
    failed = []
    for path in chosen:
        name = path.relative_to(HERE)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(path), "--tiny"], cwd=HERE.parent, env=env, capture_output=True,
                                  text=True, timeout=args.timeout)
            ok, out = proc.returncode == 0, proc.stdout + proc.stderr
            status = "ok" if ok else f"FAILED (exit {proc.returncode})"
        except subprocess.TimeoutExpired as exc:
            ok, status = False, f"FAILED (timeout after {args.timeout:.0f} s)"
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        print(f"{str(name):55s} {status:28s} {time.perf_counter() - t0:6.1f} s", flush=True)
        if not ok:
            failed.append(name)
            print("\n".join("    " + line for line in out.strip().splitlines()[-40:]), flush=True)
    print(f"{len(chosen) - len(failed)} of {len(chosen)} examples passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
