"""Protocol v3 (issue 19): SmolLM2-135M unlearning "until" a target forget perplexity, in two regimes.

*Concept level*: ``--n-forget`` (500) quotes of one fortunes category (default ``definitions``: the
``word, n.: ...`` entries share a style and a topic) are the forget set, ``--n-holdout`` more of the category are
held out (never trained on). *Record level*: ``--n-records`` (100) longer passages drawn from a pool of many
categories (no shared category; disjoint from the concept and retain categories), each memorized by its own
fine-tune, and ``--n-record-holdout`` more passages of the same pool held out. Both regimes share the retain /
held-out-retain quotes of ``run.py``'s 12 retain categories.

Each regime has its own start model: SmolLM2-135M fine-tuned on that forget set (``run.finetune``), cached under
``--cache-dir`` (default ``/work/cache/llm``) keyed by the quotes and the fine-tuning options.

Unlearning (NPO with a KL retain term, OpenUnlearning's ``NPO`` + ``retain_loss_type: KL``), through
:class:`erasus.ErasusUnlearner`:

* concept: full forget set and 10% coresets (``random``, ``kcenter``, ``craig`` on LoGra per-sample gradients,
  ``memorization``), each with ``until={"metric": "forget_perplexity", "above": target}`` on the *whole* forget
  set as the probe, and a step cap. The target is the same for every run.
* record: the full set for ``--record-steps`` steps, 10% coresets for the same number of steps (the "same steps"
  comparison of the issue), then the coresets again with ``until`` = the full run's forget perplexity.

Fine-tuning and unlearning train only the last ``--train-blocks`` (6) blocks and the final norm (see
:func:`freeze_below`). ``--eval-sets holdout,retain_eval`` evaluates only those sets after each concept run (the
forget side is then the probe's last value in ``until``): a pass over the 500 forget quotes is expensive.

Phases (``--phase``): ``finetune`` (both start models), ``concept``, ``record``; results are JSON under ``--out-dir``
rewritten after every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from run import RETAIN_CATEGORIES, evaluate, finetune, read_quotes

RECORD_CATEGORIES = ("literature", "humorists", "politics", "miscellaneous", "men-women", "platitudes", "zippy",
                     "cookie", "art", "fortunes", "knghtbrd", "linux", "perl", "songs-poems", "drugs", "ethnic",
                     "riddles", "paradoxum", "pets", "news", "debian", "goedel", "startrek", "linuxcookie")


def build_sets(args: argparse.Namespace) -> dict[str, dict[str, list[str]]]:
    """Quotes of both regimes, seeded; no quote is in two sets."""
    rng = np.random.default_rng(args.seed)
    own = read_quotes(args.category, min_chars=40, max_chars=args.max_chars)
    need = args.n_forget + args.n_holdout
    if len(own) < need:
        raise SystemExit(f"{args.category} has {len(own)} quotes of 40-{args.max_chars} chars, need {need}")
    own = [own[i] for i in rng.permutation(len(own))[:need]]
    others = sorted({q for c in RETAIN_CATEGORIES for q in read_quotes(c, min_chars=40, max_chars=args.max_chars)})
    pick = rng.permutation(len(others))[: args.n_retain + args.n_retain_eval]
    others = [others[i] for i in pick]
    pool = sorted({q for c in RECORD_CATEGORIES if c != args.category
                   for q in read_quotes(c, min_chars=args.record_min_chars, max_chars=args.record_max_chars)}
                  - set(own) - set(others))
    rec = [pool[i] for i in rng.permutation(len(pool))[: args.n_records + args.n_record_holdout]]
    common = {"retain": others[: args.n_retain], "retain_eval": others[args.n_retain:]}
    return {"concept": {"forget": own[: args.n_forget], "holdout": own[args.n_forget:], **common},
            "record": {"forget": rec[: args.n_records], "holdout": rec[args.n_records:], **common}}


def freeze_below(model: torch.nn.Module, train_blocks: int) -> torch.nn.Module:
    """Train only the last ``train_blocks`` decoder blocks and the final norm (0: every parameter).

    On 2 shared cores this is what makes the protocol affordable: the backward pass stops at the first trainable
    block, and the tied embedding / LM head (28M of the 135M parameters) stays fixed. Fine-tuning and every
    unlearning run use the same trainable set."""
    from erasus.models import decoder_layers

    if train_blocks <= 0:
        return model
    blocks = decoder_layers(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for block in list(blocks)[-train_blocks:]:
        for p in block.parameters():
            p.requires_grad_(True)
    for p in model.model.norm.parameters():
        p.requires_grad_(True)
    return model


def max_length(args: argparse.Namespace, regime: str) -> int:
    return args.max_length if regime == "concept" else args.record_max_length


def ft_options(args: argparse.Namespace, regime: str) -> dict[str, Any]:
    epochs = args.finetune_epochs if regime == "concept" else args.record_finetune_epochs
    return {"epochs": epochs, "lr": args.finetune_lr, "batch_size": args.finetune_batch_size,
            "max_length": max_length(args, regime), "seed": args.seed, "train_blocks": args.train_blocks}


def start_model(args: argparse.Namespace, regime: str, quotes: dict[str, list[str]], sets: dict[str, Any]
                ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The fine-tuned start model of one regime, cached per (forget quotes, fine-tuning options)."""
    from erasus.models import load_smollm2
    from safetensors.torch import load_model, save_model

    opts = ft_options(args, regime)
    key = json.dumps(["v3", quotes["forget"], opts], sort_keys=True).encode()
    cache = args.cache_dir / f"start-{regime}-{hashlib.sha256(key).hexdigest()[:16]}"
    model, _ = load_smollm2()
    model = freeze_below(model, args.train_blocks)
    if (cache / "model.safetensors").is_file():
        load_model(model, cache / "model.safetensors")
        return model.eval(), {**json.loads((cache / "meta.json").read_text()), "cached": True}
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(args.seed)
    model = finetune(model, sets["forget"], epochs=opts["epochs"], lr=opts["lr"], batch_size=opts["batch_size"],
                     seed=args.seed)
    meta = {"finetune_wall_s": time.perf_counter() - t0, "finetune_cpu_s": time.process_time() - c0,
            "options": opts, "path": str(cache)}
    cache.mkdir(parents=True, exist_ok=True)
    save_model(model, str(cache / "model.safetensors"))
    (cache / "meta.json").write_text(json.dumps(meta))
    return model, {**meta, "cached": False}


def datasets(args: argparse.Namespace, regime: str, quotes: dict[str, list[str]], tok: Any) -> dict[str, Any]:
    from erasus.data.llm import LMDataset

    return {name: LMDataset(q, tok, max_length=max_length(args, regime)) for name, q in quotes.items()}


def uptime() -> str:
    return Path("/proc/loadavg").read_text().strip()


def phase_finetune(args: argparse.Namespace, quotes: dict[str, dict[str, list[str]]]) -> None:
    from erasus.models import load_smollm2

    _, tok = load_smollm2()
    for regime in ("concept", "record"):
        sets = datasets(args, regime, quotes[regime], tok)
        print(regime, {k: len(v) for k, v in sets.items()}, "tokens/forget quote <=",
              sets["forget"].batch["input_ids"].shape[1], "load", uptime(), flush=True)
        model, meta = start_model(args, regime, quotes[regime], sets)
        ev = evaluate(model, sets, k=args.min_k)
        print(regime, "start model", meta, ev, "load", uptime(), flush=True)
        (args.out_dir / f"start_{regime}.json").write_text(json.dumps({"meta": meta, "start": ev}, indent=1))
        del model


def npo_options(args: argparse.Namespace, regime: str) -> dict[str, Any]:
    """NPO (beta 0.1) with OpenUnlearning's KL retain term, as in ``run.py``'s v2 grid."""
    return {"batch_size": args.batch_size if regime == "concept" else args.record_batch_size, "optimizer": "adamw",
            "lr": args.lr, "beta": 0.1, "gamma": 1.0, "alpha": args.alpha, "retain_loss": "kl"}


def probe_cost(model: torch.nn.Module, probe: Any) -> dict[str, float]:
    """CPU and wall seconds of one probe evaluation (forget perplexity), measured on the start model."""
    from erasus.metrics.llm import perplexity, token_stats

    t0, c0 = time.perf_counter(), time.process_time()
    s = token_stats(model, probe, batch_size=256)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "ppl": perplexity(s.nll_sum, s.counts)}


def loss_gap_scores(start: torch.nn.Module, sets: dict[str, Any]) -> tuple[np.ndarray, float]:
    """Per-quote memorization (RUM's ``loss_gap`` proxy for an LM): mean answer-token NLL under the shipped
    SmolLM2 (never trained on the quotes) minus under the fine-tuned start model. Returns (scores, seconds)."""
    from erasus.metrics.llm import token_stats
    from erasus.models import load_smollm2

    t0 = time.perf_counter()
    base, _ = load_smollm2()
    ref = token_stats(base, sets["forget"], batch_size=256).avg_nll
    own = token_stats(start, sets["forget"], batch_size=256).avg_nll
    del base
    return np.asarray(ref, dtype=np.float64) - np.asarray(own, dtype=np.float64), time.perf_counter() - t0


def lean_evaluate(model: torch.nn.Module, sets: dict[str, Any], names: list[str]) -> dict[str, float]:
    """Perplexity of the named sets only (``--eval-sets``): on 2 loaded cores a pass over the 500 forget quotes
    costs as much as several unlearning steps, so lean runs read the forget side from the probe."""
    from erasus.metrics.llm import perplexity, token_stats

    out = {}
    for name in names:
        s = token_stats(model, sets[name], batch_size=len(sets[name]))
        out[f"ppl_{name}"] = perplexity(s.nll_sum, s.counts)
    return out


def one_run(args: argparse.Namespace, regime: str, model: torch.nn.Module, sets: dict[str, Any], *,
            selector: str, features: Any, feature_s: float, steps: int, until: dict[str, Any] | None,
            selector_options: dict[str, Any] | None = None) -> dict[str, Any]:
    import erasus

    opts = npo_options(args, regime)
    full = selector == "full"
    unlearner = erasus.ErasusUnlearner(model, strategy="npo", selector=selector,
                                       prune_ratio=1.0 if full else args.prune_ratio, seed=args.seed,
                                       selector_options=selector_options or None, **opts)
    torch.manual_seed(args.seed)
    load0 = uptime()
    t0, c0 = time.perf_counter(), time.process_time()
    out = unlearner.fit(sets["forget"], sets["retain"], features=None if full else features, progress=False,
                        steps=steps, **({"until": until} if until is not None else {}))
    cpu = time.process_time() - c0
    wall = time.perf_counter() - t0
    t = unlearner.timings_
    h = unlearner.history_
    run = {"regime": regime, "strategy": "npo", "selector": selector, "k": len(unlearner.selection_),
           "indices": unlearner.selection_.indices.tolist(), "weights": unlearner.selection_.weights.tolist(),
           "cap": steps, "steps": len(h), "until": h.until, "checks": h.checks,
           "features_s": feature_s, "selection_s": t["selection_s"], "unlearning_s": t["unlearning_s"],
           "fit_wall_s": wall, "fit_cpu_s": cpu, "load_before": load0, "load_after": uptime(),
           "options": opts,
           **(lean_evaluate(out, sets, args.eval_sets.split(",")) if args.eval_sets else evaluate(out, sets, k=args.min_k))}
    del out, unlearner
    return run


def phase_concept(args: argparse.Namespace, quotes: dict[str, list[str]], result: dict[str, Any],
                  save: Any) -> None:
    from erasus.models import load_smollm2

    _, tok = load_smollm2()
    sets = datasets(args, "concept", quotes, tok)
    model, meta = start_model(args, "concept", quotes, sets)
    result["start_meta"] = meta
    result["start"] = start = (lean_evaluate(model, sets, args.eval_sets.split(",")) if args.eval_sets
                               else evaluate(model, sets, k=args.min_k))
    # the probe: a fixed seeded sample of the forget set (every run, full or coreset, is judged on it)
    from erasus.data.llm import LMDataset

    rng = np.random.default_rng(args.seed + 1)
    probe_idx = np.sort(rng.permutation(len(quotes["forget"]))[: args.probe_size])
    probe = LMDataset([quotes["forget"][i] for i in probe_idx], tok, max_length=args.max_length)
    result["probe"] = {"indices": probe_idx.tolist(), **probe_cost(model, probe)}
    target = args.target_x * result["probe"]["ppl"]
    result["target"] = {"metric": "forget_perplexity on the probe", "above": target, "every": args.every}
    print("start", start, "probe", result["probe"]["ppl"], "target", target, flush=True)
    save()
    until = {"metric": "forget_perplexity", "above": target, "every": args.every, "data": probe}
    feats, feature_s = None, 0.0
    selectors = [s for s in args.selectors.split(",") if s]
    for selector in ["full"] + selectors:
        if selector in ("kcenter", "craig") and feats is None:
            from run import forget_features

            ns = argparse.Namespace(grad_layers=2, proj_dim=512, batch_size=args.batch_size, seed=args.seed)
            info: dict[str, Any] = {}
            feats = forget_features(ns, model, sets, info)
            result["features"] = info
            feature_s = info["features_s"]
        sel_opts, fs, sel_feats = {}, 0.0, feats
        if selector in ("kcenter", "craig"):
            fs = feature_s
        if selector == "memorization":
            scores, fs = loss_gap_scores(model, sets)
            result["memorization_scores"] = scores.tolist()
            sel_feats, sel_opts = scores[:, None], {"keep": args.memorization_keep}
        cap = args.cap if selector == "full" else args.coreset_cap
        run = one_run(args, "concept", model, sets, selector=selector, features=sel_feats, feature_s=fs,
                      steps=cap, until=until, selector_options=sel_opts)
        result["runs"].append(run)
        save()
        print(selector, {k: v for k, v in run.items() if k not in ("indices", "weights", "checks", "options")},
              flush=True)


def phase_record(args: argparse.Namespace, quotes: dict[str, list[str]], result: dict[str, Any],
                 save: Any) -> None:
    from erasus.models import load_smollm2

    _, tok = load_smollm2()
    sets = datasets(args, "record", quotes, tok)
    model, meta = start_model(args, "record", quotes, sets)
    result["start_meta"] = meta
    result["start"] = start = evaluate(model, sets, k=args.min_k)
    result["probe"] = probe_cost(model, sets["forget"])
    print("start", start, flush=True)
    save()
    from run import forget_features

    ns = argparse.Namespace(grad_layers=2, proj_dim=512, batch_size=args.record_batch_size, seed=args.seed)
    info: dict[str, Any] = {}
    feats = forget_features(ns, model, sets, info)
    result["features"] = info
    selectors = [s for s in args.record_selectors.split(",") if s]
    # 1. the same number of steps for the full set and every coreset
    for selector in ["full"] + selectors:
        fs = info["features_s"] if selector in ("kcenter", "craig") else 0.0
        run = one_run(args, "record", model, sets, selector=selector, features=feats, feature_s=fs,
                      steps=args.record_steps, until=None)
        run["protocol"] = "same_steps"
        result["runs"].append(run)
        save()
        print("same steps", selector, {k: run[k] for k in ("steps", "fit_wall_s", "ppl_forget", "ppl_holdout",
                                                            "ppl_retain", "ppl_retain_eval", "min_k_auc")},
              flush=True)
    # 2. coresets until the full run's forget perplexity (on the whole forget set), capped
    target = result["runs"][0]["ppl_forget"]
    result["target"] = {"metric": "forget_perplexity on the whole forget set", "above": target,
                        "every": args.every}
    until = {"metric": "forget_perplexity", "above": target, "every": args.every}
    for selector in selectors:
        fs = info["features_s"] if selector in ("kcenter", "craig") else 0.0
        run = one_run(args, "record", model, sets, selector=selector, features=feats, feature_s=fs,
                      steps=args.record_coreset_cap, until=until)
        run["protocol"] = "until_full"
        result["runs"].append(run)
        save()
        print("until", selector, {k: run[k] for k in ("steps", "until", "fit_wall_s", "ppl_forget",
                                                       "ppl_holdout", "ppl_retain", "ppl_retain_eval")}, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase", choices=("finetune", "concept", "record"), required=True)
    p.add_argument("--category", default="definitions")
    p.add_argument("--n-forget", type=int, default=500)
    p.add_argument("--n-holdout", type=int, default=32)
    p.add_argument("--max-chars", type=int, default=100, help="concept and retain quotes: 40 to this many chars")
    p.add_argument("--n-retain", type=int, default=100)
    p.add_argument("--n-retain-eval", type=int, default=40)
    p.add_argument("--max-length", type=int, default=24, help="tokens per concept quote (longer: truncated)")
    p.add_argument("--n-records", type=int, default=100)
    p.add_argument("--n-record-holdout", type=int, default=40)
    p.add_argument("--record-min-chars", type=int, default=100)
    p.add_argument("--record-max-chars", type=int, default=160)
    p.add_argument("--record-max-length", type=int, default=40)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--record-finetune-epochs", type=int, default=4)
    p.add_argument("--finetune-lr", type=float, default=3e-4)
    p.add_argument("--finetune-batch-size", type=int, default=8)
    p.add_argument("--train-blocks", type=int, default=6,
                   help="train only the last N of the 30 blocks (+ final norm) in fine-tuning and unlearning; 0: all")
    p.add_argument("--min-k", type=float, default=0.4)
    p.add_argument("--batch-size", type=int, default=8, help="concept unlearning batch")
    p.add_argument("--record-batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4, help="NPO learning rate (AdamW), every run")
    p.add_argument("--alpha", type=float, default=5.0, help="weight of NPO's KL retain term")
    p.add_argument("--prune-ratio", type=float, default=0.1)
    p.add_argument("--target-x", type=float, default=3.0,
                   help="concept target: probe forget perplexity above this multiple of the start model's")
    p.add_argument("--probe-size", type=int, default=100, help="concept probe: this many forget quotes")
    p.add_argument("--every", type=int, default=10, help="probe every this many steps")
    p.add_argument("--cap", type=int, default=150, help="concept full-set step cap")
    p.add_argument("--coreset-cap", type=int, default=150, help="concept coreset step cap")
    p.add_argument("--selectors", default="random,kcenter,craig,memorization")
    p.add_argument("--memorization-keep", default="stratified")
    p.add_argument("--record-steps", type=int, default=50, help="record regime: steps of the same-steps runs")
    p.add_argument("--record-coreset-cap", type=int, default=100)
    p.add_argument("--record-selectors", default="random,kcenter")
    p.add_argument("--eval-sets", default="",
                   help="comma list of sets to evaluate after each concept run (e.g. holdout,retain_eval); "
                        "default: every set and the Min-K%% AUC")
    p.add_argument("--tag", default="", help="suffix of the output JSON names")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=Path("/work/cache/llm"))
    p.add_argument("--out-dir", type=Path, default=Path(__file__).with_name("v3"))
    return p.parse_args(argv)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    quotes = build_sets(args)
    if args.phase == "finetune":
        phase_finetune(args, quotes)
        return
    import erasus

    result: dict[str, Any] = {"env": {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                      "erasus": getattr(erasus, "__version__", "dev"), "torch": torch.__version__,
                                      "torch_threads": torch.get_num_threads(), "load_start": uptime(),
                                      "args": {k: str(v) if isinstance(v, Path) else v
                                               for k, v in vars(args).items()}},
                              "quotes": quotes[args.phase], "runs": []}
    out = args.out_dir / f"{args.phase}{args.tag}.json"

    def save() -> None:
        out.write_text(json.dumps(result, indent=1))

    (phase_concept if args.phase == "concept" else phase_record)(args, quotes[args.phase], result, save)
    result["env"]["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    result["env"]["load_end"] = uptime()
    save()


if __name__ == "__main__":
    main()
