"""The ``erasus`` command line: a thin reader of configs and arguments over the Python API.

Sub-commands: ``demo`` (the main job), ``select`` (features file -> coreset indices), ``list`` (registered
selectors, strategies and metrics). Every command exits non-zero with a one-line message on failure and
accepts ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from ..errors import ErasusError

__all__ = ["main", "build_parser"]

Command = Callable[[argparse.Namespace], int]


def _cmd_list(args: argparse.Namespace) -> int:
    from .. import registry

    kinds = {
        "selectors": registry.SELECTORS,
        "strategies": registry.STRATEGIES,
        "metrics": registry.METRICS,
    }
    chosen = [args.kind] if args.kind else list(kinds)
    tables = {}
    for kind in chosen:
        try:
            tables[kind] = registry.describe(kinds[kind])
        except ImportError as exc:  # a family whose optional dependency is missing
            tables[kind] = {"(unavailable)": str(exc)}
    if args.json:
        print(json.dumps(tables, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for kind, rows in tables.items():
        table = Table(title=f"{kind} ({len(rows)})", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        for name, doc in rows.items():
            table.add_row(name, doc)
        console.print(table)
    return 0


def _load_features(path: str) -> Any:
    import numpy as np

    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        tensors = load_file(path)
        if len(tensors) != 1:
            raise ErasusError(f"{path} holds {len(tensors)} tensors ({sorted(tensors)}); expected exactly one")
        return next(iter(tensors.values()))
    raise ErasusError(f"unsupported features file {path!r}; expected a .npy or .safetensors file")


def _parse_option(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise ErasusError(f"--option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def _cmd_select(args: argparse.Namespace) -> int:
    import numpy as np

    from ..selectors import select

    x = _load_features(args.features)
    options = dict(_parse_option(o) for o in args.option or [])
    sel = select(x, args.k, method=args.method, seed=args.seed, ratio=args.ratio, **options)
    if args.output:
        if args.output.endswith(".npy"):
            np.save(args.output, sel.indices)
        else:
            with open(args.output, "w") as fh:
                json.dump(sel.to_dict(), fh)
    summary = {"method": sel.method, "k": len(sel), "objective": sel.objective, "output": args.output}
    if args.json:
        print(json.dumps(summary if args.output else sel.to_dict()))
    else:
        print(f"selected {len(sel)} of {x.shape[0]} rows with {sel.method}; objective = {sel.objective}")
        if not args.output:
            print("indices:", sel.indices.tolist())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="erasus", description="Machine unlearning on coresets.")
    parser.add_argument("--version", action="version", version=f"erasus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered selectors, strategies and metrics")
    p.add_argument("kind", nargs="?", choices=["selectors", "strategies", "metrics"])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("select", help="select a coreset from a features file (.npy or .safetensors)")
    p.add_argument("features", help="(n, d) float array: .npy (memory-mapped) or .safetensors")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("-k", type=int, help="coreset size")
    group.add_argument("--ratio", type=float, help="coreset size as a fraction of n")
    p.add_argument("--method", default="kcenter", help="selector name (see `erasus list selectors`)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE", help="selector option (YAML value)")
    p.add_argument("--output", "-o", help="write indices to .npy or the whole selection to .json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_select)

    p = sub.add_parser("demo", help="the main job: coreset unlearning on scikit-learn digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=None, help="coreset size (default: 10%% of the forget set)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ErasusError, OSError) as exc:
        print(f"erasus {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
