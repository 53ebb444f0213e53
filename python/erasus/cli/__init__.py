"""The ``erasus`` command line: a thin reader of configs and arguments over the Python API.

Sub-commands: ``demo`` (the main job), ``select`` (features file -> coreset indices), ``list`` (registered
selectors, strategies and metrics), ``unlearn`` / ``evaluate`` / ``benchmark`` (YAML configs) and ``init``
(writes the example configs shipped in the wheel). Every command exits non-zero with a one-line message on failure and
accepts ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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
    groups = registry.metric_groups() if "metrics" in tables and "(unavailable)" not in tables["metrics"] else None
    if args.json:
        payload: dict[str, Any] = dict(tables)
        if groups is not None:
            payload["metric_groups"] = groups
        print(json.dumps(payload, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for kind, rows in tables.items():
        # metrics print one table per group (forgetting / utility / efficiency / privacy), the spec's section 6
        parts = ([(f"metrics: {g}", names) for g, names in groups.items()] if kind == "metrics" and groups
                 else [(kind, list(rows))])
        for title, names in parts:
            table = Table(title=f"{title} ({len(names)})", show_lines=False)
            table.add_column("name", style="bold")
            table.add_column("description")
            for name in names:
                table.add_row(name, rows[name])
            console.print(table)
    if groups is not None:
        console.print(f"{sum(len(v) for v in groups.values())} metrics in all")
    return 0


def _load_features(path: str) -> Any:
    import numpy as np

    from ..io import verify_file

    p = Path(path)
    if not p.is_file():
        raise ErasusError(f"features file {path!r} does not exist")
    verify_file(p)
    if path.endswith(".npy"):
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:  # numpy's "pickled data" / bad header messages
            raise ErasusError(f"{path} is not a plain .npy array (erasus never unpickles): {exc}") from None
    if path.endswith(".safetensors"):
        from ..unlearner import load_safetensors

        tensors = {k: v.numpy() for k, v in load_safetensors(path).items()}
        if len(tensors) != 1:
            raise ErasusError(f"{path} holds {len(tensors)} tensors ({sorted(tensors)}); expected exactly one")
        return next(iter(tensors.values()))
    raise ErasusError(f"unsupported features file {path!r}; expected a .npy or .safetensors file")


def _parse_option(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise ErasusError(f"--option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ErasusError(f"--option {text!r}: the value is not valid YAML ({exc})") from None


def _cmd_select(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import atomic_path, check_writable
    from ..registry import get_selector

    options = dict(_parse_option(o) for o in args.option or [])
    selector = get_selector(args.method, seed=args.seed, **options)  # names and options checked before loading
    if args.output:
        check_writable(Path(args.output).parent if Path(args.output).parent != Path("") else Path("."))
    x = _load_features(args.features)
    sel = selector.select(args.k, features=x, ratio=args.ratio)
    if args.output:
        with atomic_path(args.output) as tmp:
            if args.output.endswith(".npy"):
                with open(tmp, "wb") as fh:
                    np.save(fh, sel.indices)
            else:
                tmp.write_text(json.dumps(sel.to_dict()))
    summary = {"method": sel.method, "k": len(sel), "objective": sel.objective, "output": args.output}
    if args.json:
        print(json.dumps(summary if args.output else sel.to_dict()))
    else:
        print(f"selected {len(sel)} of {x.shape[0]} rows with {sel.method}; objective = {sel.objective}")
        if not args.output:
            print("indices:", sel.indices.tolist())
    return 0


def _print_metrics(result: dict[str, Any], *, title: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=float))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, (int, float)):
            table.add_row(key, f"{value:.4f}")
    Console().print(table)


def _cmd_unlearn(args: argparse.Namespace) -> int:
    from ..io import check_writable
    from ..unlearner import ErasusUnlearner
    from .configs import UnlearnConfig, build_model, check_paths

    # everything that can be checked without computing is checked first: config, paths, output folder
    cfg = UnlearnConfig.from_yaml(args.config)
    check_paths(data={"forget": cfg.forget, "retain": cfg.retain, "test": cfg.test}, models=(cfg.model,))
    output = check_writable(args.output or cfg.output)
    model = build_model(cfg.model)
    unlearner = ErasusUnlearner(model, strategy=cfg.strategy, selector=cfg.selector, prune_ratio=cfg.prune_ratio,
                                features=cfg.features, seed=cfg.seed, selector_options=cfg.selector_options,
                                **cfg.strategy_options)
    unlearner.make_selector()
    unlearner.fit(cfg.forget, cfg.retain, steps=cfg.steps, epochs=cfg.epochs, progress=not args.json)
    out = unlearner.save(output)
    result: dict[str, Any] = {"output": str(out), "coreset_size": len(unlearner.selection_ or ()),
                              **unlearner.timings_}
    if cfg.test is not None and cfg.retain is not None:
        result.update(unlearner.evaluate(cfg.forget, cfg.retain, cfg.test))
    _print_metrics(result, title=f"{cfg.strategy} on a {cfg.selector} coreset -> {out}", as_json=args.json)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..metrics import MetricSuite
    from ..unlearner import as_data
    from .configs import EvaluateConfig, build_model, check_paths

    cfg = EvaluateConfig.from_yaml(args.config)
    check_paths(data={"forget": cfg.forget, "retain": cfg.retain, "test": cfg.test}, models=(cfg.model, cfg.reference))
    names = list(cfg.metrics) + (["avg_gap"] if cfg.reference is not None and "avg_gap" not in cfg.metrics else [])
    suite = MetricSuite(names)
    splits = {"forget": cfg.forget, "retain": cfg.retain, "test": cfg.test}
    missing = suite.missing_splits(splits)
    if missing:
        name, split = missing[0]
        raise ErasusError(f"metric {name!r} needs the {split} data set; add `{split}:` to {args.config}")
    model = build_model(cfg.model)
    reference = build_model(cfg.reference) if cfg.reference is not None else None
    result = suite.run(
        model, forget=as_data(cfg.forget), retain=as_data(cfg.retain) if cfg.retain else None,
        test=as_data(cfg.test) if cfg.test else None, reference_model=reference,
    )
    _print_metrics(result, title="evaluation", as_json=args.json)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..experiments import ClaimConfig, run_claim
    from .demo import write_claim_report

    cfgs = [ClaimConfig.from_yaml(path) for path in args.config]
    results = [run_claim(cfg, log=(lambda s: None) if args.json else print) for cfg in cfgs]
    page = write_claim_report(results, Path(args.out), title="erasus benchmark: coreset versus full unlearning")
    summary = {"report": str(page), "rows": sum(len(r["rows"]) for r in results)}
    print(json.dumps(summary) if args.json else f"report: {page}")
    return 0


def example_configs() -> dict[str, str]:
    """The example configs shipped in the wheel (``erasus/example_configs``): ``name -> YAML text``."""
    from importlib.resources import files

    folder = files("erasus").joinpath("example_configs")
    return {p.name.removesuffix(".yaml"): p.read_text() for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


def _cmd_init(args: argparse.Namespace) -> int:
    from ..io import atomic_write, check_writable

    shipped = example_configs()
    names = args.name or sorted(shipped)
    unknown = [n for n in names if n not in shipped]
    if unknown:
        raise ErasusError(f"no example config named {unknown}; the examples are: {', '.join(sorted(shipped))}")
    out = check_writable(args.dir)
    existing = [n for n in names if (out / f"{n}.yaml").exists()]
    if existing and not args.force:
        raise ErasusError(f"{', '.join(str(out / f'{n}.yaml') for n in existing)} already "
                          f"{'exists' if len(existing) == 1 else 'exist'}; pass --force to overwrite")
    written = [str(atomic_write(out / f"{n}.yaml", shipped[n])) for n in names]
    print(json.dumps({"written": written}) if args.json else "\n".join(f"wrote {w}" for w in written))
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

    p = sub.add_parser("unlearn", help="select a coreset and unlearn it, as a YAML config says")
    p.add_argument("--config", required=True, help="YAML file (see configs/unlearn_*.yaml)")
    p.add_argument("--output", "-o", help="output folder (overrides the config's `output`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_unlearn)

    p = sub.add_parser("evaluate", help="evaluate a model (and its gap to a retrained one), as a YAML config says")
    p.add_argument("--config", required=True, help="YAML file (see configs/evaluate_*.yaml)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("benchmark", help="coreset-versus-full unlearning experiments from YAML configs")
    p.add_argument("config", nargs="+", help="ClaimConfig YAML files (see configs/claim_*.yaml)")
    p.add_argument("--out", default="reports/benchmark", help="folder for report.html and its figures")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("init", help="write the example configs (unlearn, evaluate, benchmark) into ./configs")
    p.add_argument("name", nargs="*", help="which examples (default: all); e.g. unlearn_digits")
    p.add_argument("--dir", default="configs", help="folder to write them into (default: configs)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("demo", help="the main job: coreset unlearning on scikit-learn digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fraction", type=float, default=0.1, help="coreset size as a fraction of the forget set")
    p.add_argument("--out", default="reports/demo", help="folder for report.html and its figures")
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
