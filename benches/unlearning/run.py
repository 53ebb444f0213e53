"""The claim, benchmarked: coreset versus full-forget-set unlearning on real data.

    python benches/unlearning/run.py configs/claim_digits_random.yaml configs/claim_digits_class.yaml \
        --out benches/unlearning/results

Runs each ClaimConfig (see ``erasus.experiments.claim``), saves the raw rows as JSON after every config
(so a long run keeps what it finished), then writes ``summary.md`` (mean ± std over seeds) and the figures.
``RESULTS.md`` beside this script records a run and its reading.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from erasus.experiments import ClaimConfig, run_claim, summarize
from erasus.report import plot_coreset_curve, plot_pareto


def _fmt(s: dict, key: str, scale: float = 100.0) -> str:
    if key not in s:
        return "-"
    return f"{s[key] * scale:.1f} ± {s[key + '_std'] * scale:.1f}"


def _time(s: dict) -> str:
    cell = f"{s['time_s']:.2f}" if "time_s" in s else "-"
    return cell + (f" ({s['diverged']}/{s['seeds']} diverged)" if s.get("diverged") else "")


def summary_table(summary: list[dict], *, fraction: float | None) -> str:
    """Markdown table (values in %): rows at ``fraction`` plus the full-forget-set rows, per strategy."""
    lines = ["| scenario | strategy | selector | fraction | forget acc | retain acc | test acc | MIA | Avg. Gap | time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    keep = [s for s in summary if s["fraction"] in (1.0, fraction) or fraction is None]
    keep.sort(key=lambda s: (s["scenario"], s["strategy"], -(s["fraction"] or 0), s.get("avg_gap", 9)))
    for s in keep:
        lines.append(f"| {s['scenario']} | {s['strategy']} | {s['selector']} | {s['fraction']:.0%} | "
                     f"{_fmt(s, 'forget_acc')} | {_fmt(s, 'retain_acc')} | {_fmt(s, 'test_acc')} | {_fmt(s, 'mia')} | "
                     f"{_fmt(s, 'avg_gap')} | {_time(s)} |")
    return "\n".join(lines)


def reference_table(reference: list[dict]) -> str:
    lines = ["| scenario | model | forget acc | retain acc | test acc | MIA | Avg. Gap |", "|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in reference:
        groups.setdefault((r["dataset"], r["scenario"], r["strategy"]), []).append(r)
    for (dataset, scenario, model), rs in sorted(groups.items()):
        cells = [f"{np.mean([r[k] for r in rs]) * 100:.1f} ± {np.std([r[k] for r in rs]) * 100:.1f}"
                 for k in ("forget_acc", "retain_acc", "test_acc", "mia", "avg_gap")]
        lines.append(f"| {dataset} {scenario} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--out", default="benches/unlearning/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / "raw.json"
    done = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    for path in args.configs:
        if path in done:
            print(f"{path}: already in {raw_path}, skipped", flush=True)
            continue
        cfg = ClaimConfig.from_yaml(path)
        t0 = time.perf_counter()
        res = run_claim(cfg, log=lambda s: print(f"  {s}", flush=True))
        done[path] = {"rows": res["rows"], "reference": res["reference"], "config": res["config"],
                      "seconds": time.perf_counter() - t0}
        raw_path.write_text(json.dumps(done, default=float))
        print(f"{path}: {time.perf_counter() - t0:.0f} s", flush=True)
    parts = [f"# Run of {time.strftime('%Y-%m-%d')} on {platform.machine()}, {platform.processor() or 'CPU'}, "
             f"Python {sys.version.split()[0]}\n"]
    for path, res in done.items():
        cfg = res["config"]
        tag = f"{cfg['dataset']}_{cfg['scenario']}"
        summary = summarize(res["rows"])
        plot_coreset_curve([r for r in res["rows"] if r["strategy"] in ("grad_diff", "gradient_ascent", "scrub")],
                           out / f"curve_{tag}.png", title=f"{tag}: coreset fraction versus Avg. Gap")
        plot_pareto(summary, out / f"pareto_{tag}.png", title=f"{tag}: time versus Avg. Gap (means over seeds)")
        parts += [f"## {path} ({res['seconds']:.0f} s, seeds {cfg['seeds']})\n", reference_table(res["reference"]),
                  "", summary_table(summary, fraction=0.1), ""]
    (out / "summary.md").write_text("\n".join(parts))
    print(f"wrote {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
