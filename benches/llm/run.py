"""SmolLM2-135M forgets one category of Debian's ``fortunes``: full forget set vs a 10% coreset.

Protocol (issue 8):

1. Quotes: ``--n-forget`` quotes of the forget category (default ``startrek``) are the forget set;
   ``--n-holdout`` other quotes of the same category are never trained on (Min-K% non-members);
   ``--n-retain`` quotes sampled from other categories are the retain set, ``--n-retain-eval`` more are a
   held-out utility set.
2. The dequantized SmolLM2-135M (:func:`erasus.models.load_smollm2`) is fine-tuned on the forget quotes
   so that it has memorized them (without this step forget and holdout quotes are both unseen and the
   Min-K% AUC starts at chance, leaving nothing to unlearn). This fine-tuned model is the starting point.
3. Each strategy (``grad_diff`` and ``npo`` with a KL retain loss, ``rmu``) unlearns with the same
   hyperparameters on (a) the full forget set for ``--epochs`` passes and (b) a 10% coreset picked by
   ``random``, ``kcenter`` and ``craig`` through :class:`erasus.ErasusUnlearner`, given
   ``--coreset-budget`` (default 25%) of the full run's optimizer steps (``--coreset-budget 0``: the same
   number of epochs instead). Selection features are
   Kronecker-projected (LoGra) per-sample gradients of the last blocks' MLPs
   (:func:`erasus.features.per_sample_gradients`), computed once; their time is charged to every
   feature-based coreset run.
4. Metrics on every model: token-weighted perplexity of forget / retain / retain-eval quotes and the
   Min-K% Prob AUC (Shi et al., 2024) of forget (members) vs holdout (non-members), from one
   :func:`erasus.metrics.llm.token_stats` pass per set.

Results go to ``--out`` (JSON, rewritten after every run so a cut-short run keeps what it measured) and a
Markdown table on stdout. ``python benches/llm/run.py --help`` lists the sizes and hyperparameters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import platform
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

FORTUNES = Path("/usr/share/games/fortunes")
RETAIN_CATEGORIES = ("food", "love", "sports", "science", "kids", "law", "wisdom", "work", "education",
                     "medicine", "people", "computers")
SELECTORS = ("random", "kcenter", "craig")
STRATEGIES = ("rmu", "npo", "grad_diff")


def read_quotes(category: str, *, min_chars: int, max_chars: int) -> list[str]:
    """The ``%``-separated quotes of one fortunes file, whitespace-normalized, within the length bounds."""
    path = FORTUNES / category
    if not path.is_file():
        raise SystemExit(f"{path} is missing: apt-get install -y fortunes")
    text = path.read_text(encoding="utf-8", errors="replace")
    quotes = [re.sub(r"\s+", " ", q).strip() for q in re.split(r"^%\s*$", text, flags=re.MULTILINE)]
    return [q for q in quotes if min_chars <= len(q) <= max_chars]


def build_sets(args: argparse.Namespace) -> dict[str, list[str]]:
    rng = np.random.default_rng(args.seed)
    own = read_quotes(args.category, min_chars=args.min_chars, max_chars=args.max_chars)
    need = args.n_forget + args.n_holdout
    if len(own) < need:
        raise SystemExit(f"{args.category} has {len(own)} quotes of {args.min_chars}-{args.max_chars} chars, "
                         f"need {need}")
    own = [own[i] for i in rng.permutation(len(own))[:need]]
    others = sorted({q for c in RETAIN_CATEGORIES if c != args.category
                     for q in read_quotes(c, min_chars=args.min_chars, max_chars=args.max_chars)})
    pick = rng.permutation(len(others))[: args.n_retain + args.n_retain_eval]
    others = [others[i] for i in pick]
    return {"forget": own[: args.n_forget], "holdout": own[args.n_forget:],
            "retain": others[: args.n_retain], "retain_eval": others[args.n_retain:]}


def evaluate(model: torch.nn.Module, sets: dict[str, Any], *, k: float) -> dict[str, float]:
    """Perplexity of every set and the Min-K% AUC of forget vs holdout, one forward pass per set."""
    from erasus.metrics.llm import mia_auc, min_k_score, perplexity, token_stats

    stats = {name: token_stats(model, ds, batch_size=len(ds)) for name, ds in sets.items()}
    out = {f"ppl_{name}": perplexity(s.nll_sum, s.counts) for name, s in stats.items()}
    out["min_k_auc"] = mia_auc(min_k_score(stats["forget"].logp, k=k), min_k_score(stats["holdout"].logp, k=k))
    return out


def finetune(model: torch.nn.Module, data: Any, *, epochs: int, lr: float, batch_size: int, seed: int
             ) -> torch.nn.Module:
    """Plain AdamW next-token training on ``data`` (the "model that knows the forget set")."""
    from erasus.tasks.causal_lm import CausalLMTask

    task = CausalLMTask()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen)
    for _ in tqdm(range(epochs), desc="fine-tune on the forget quotes"):
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            task.loss(model, batch).backward()
            opt.step()
    return model.eval()


def start_model(args: argparse.Namespace, quotes: dict[str, list[str]], sets: dict[str, Any]
                ) -> tuple[torch.nn.Module, float, bool]:
    """The fine-tuned start model, cached on disk per (forget quotes, fine-tuning options): later runs of a
    sweep reuse it. Returns (model, seconds the fine-tuning took when it was done, loaded from cache?)."""
    from erasus.models import load_smollm2

    key = json.dumps(["safetensors-model-v2", quotes["forget"], args.finetune_epochs, args.finetune_lr,
                      args.batch_size, args.max_length, args.seed]).encode()
    cache = Path.home() / ".cache" / "erasus" / f"bench-llm-start-{hashlib.sha256(key).hexdigest()[:16]}"
    model, _ = load_smollm2()
    # save_model/load_model store tied tensors (input/output embeddings) once and check every other key
    from safetensors.torch import load_model, save_model

    if (cache / "model.safetensors").is_file():
        load_model(model, cache / "model.safetensors")
        return model.eval(), float(json.loads((cache / "meta.json").read_text())["finetune_s"]), True
    t0 = time.perf_counter()
    model = finetune(model, sets["forget"], epochs=args.finetune_epochs, lr=args.finetune_lr,
                     batch_size=args.batch_size, seed=args.seed)
    seconds = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    save_model(model, str(cache / "model.safetensors"))
    (cache / "meta.json").write_text(json.dumps({"finetune_s": seconds}))
    return model, seconds, False


def forget_features(args: argparse.Namespace, model: torch.nn.Module, sets: dict[str, Any],
                    result: dict[str, Any]) -> np.ndarray:
    """LoGra per-sample gradients of the last ``--grad-layers`` blocks' MLPs (the kcenter/craig features)."""
    from erasus.features import per_sample_gradients
    from erasus.models import decoder_layers

    n_blocks = len(decoder_layers(model))
    grad_layers = [f"model.layers.{i}.mlp" for i in range(n_blocks - args.grad_layers, n_blocks)]
    t0 = time.perf_counter()
    feats = per_sample_gradients(model, sets["forget"], projection="kronecker", proj_dim=args.proj_dim,
                                 layers=grad_layers, batch_size=args.batch_size, seed=args.seed).numpy()
    result["features_s"] = time.perf_counter() - t0
    result["features"] = {"layers": grad_layers, "proj_dim": args.proj_dim, "projection": "kronecker"}
    print(f"features {feats.shape} in {result['features_s']:.1f}s", flush=True)
    return feats


def strategy_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    common = {"batch_size": args.batch_size, "optimizer": "adamw"}
    coeff: float | str = args.rmu_coeff if args.rmu_coeff == "adaptive" else float(args.rmu_coeff)
    return {
        "grad_diff": {**common, "lr": args.lr, "alpha": args.alpha, "retain_loss": "kl"},
        "npo": {**common, "lr": args.npo_lr or args.lr, "beta": 0.1, "gamma": 1.0, "alpha": args.alpha,
                "retain_loss": args.retain_loss},
        # param_filter "mlp" (gate/up/down of blocks layer-2..layer), not WMDP's down_proj-only default: the
        # runs in RESULTS.md were recorded with it
        "rmu": {**common, "lr": args.rmu_lr, "layer": args.rmu_layer, "steering_coeff": coeff,
                "adaptive_scale": args.rmu_scale, "alpha": args.rmu_alpha, "param_filter": "mlp"},
        # Align-then-Unlearn: the paper's SGD lr 3e-4, thresholds, window and predictor; MiniLM as the encoder
        "embedding_alignment": {"batch_size": args.batch_size, "lr": args.atu_lr, "concept": args.atu_concept,
                                "alpha": args.alpha, "retain_loss": "kl"},
    }


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--category", default="startrek")
    p.add_argument("--n-forget", type=int, default=100)
    p.add_argument("--n-holdout", type=int, default=40)
    p.add_argument("--n-retain", type=int, default=100)
    p.add_argument("--n-retain-eval", type=int, default=40)
    p.add_argument("--min-chars", type=int, default=40)
    p.add_argument("--max-chars", type=int, default=130)
    p.add_argument("--max-length", type=int, default=48, help="tokens per quote (longer ones are truncated)")
    p.add_argument("--prune-ratio", type=float, default=0.1)
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=float, default=2.0, help="unlearning passes over the full forget set")
    p.add_argument("--coreset-budget", type=float, default=0.25,
                   help="coreset runs get this fraction of the full run's steps (0: the same epochs instead)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--coreset-lr-scales", default="1",
                   help="coreset runs at these multiples of the strategy's lr (e.g. 1,4: also 4x lr for 1/4 of the steps)")
    p.add_argument("--lr", type=float, default=1e-5, help="grad_diff (and npo) learning rate (AdamW; NPO paper default)")
    p.add_argument("--npo-lr", type=float, default=None, help="npo learning rate (default: --lr)")
    p.add_argument("--alpha", type=float, default=1.0, help="retain-term weight of grad_diff and npo")
    p.add_argument("--retain-loss", choices=("kl", "nll"), default="kl", help="npo's retain term")
    p.add_argument("--rmu-lr", type=float, default=1e-4)
    p.add_argument("--rmu-layer", type=int, default=7, help="SmolLM2-135M has 30 blocks; WMDP used 7 of 32")
    p.add_argument("--rmu-coeff", default="adaptive", help="a number (WMDP: 6.5) or 'adaptive' (Dang et al.)")
    p.add_argument("--rmu-scale", type=float, default=5.0, help="adaptive RMU's beta")
    p.add_argument("--rmu-alpha", type=float, default=1200.0)
    p.add_argument("--atu-lr", type=float, default=3e-4, help="embedding_alignment's SGD learning rate (paper)")
    p.add_argument("--atu-concept", default="Star Trek", help="embedding_alignment's concept to forget")
    p.add_argument("--grad-layers", type=int, default=2, help="per-sample gradients of the last N blocks' MLPs")
    p.add_argument("--proj-dim", type=int, default=512)
    p.add_argument("--min-k", type=float, default=0.4)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--selectors", default=",".join(SELECTORS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    return p.parse_args()


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import erasus
    import transformers

    return {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "erasus": getattr(erasus, "__version__", "dev"), "torch_threads": torch.get_num_threads(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import erasus
    from erasus.data.llm import LMDataset
    from erasus.models import load_smollm2

    quotes = build_sets(args)
    model, tok = load_smollm2()
    sets = {name: LMDataset(q, tok, max_length=args.max_length) for name, q in quotes.items()}
    result: dict[str, Any] = {"env": environment(args), "quotes": quotes, "runs": []}

    def save() -> None:
        args.out.write_text(json.dumps(result, indent=1))

    result["pretrained"] = evaluate(model, sets, k=args.min_k)
    print("pretrained", result["pretrained"], flush=True)
    del model
    model, result["finetune_s"], result["start_cached"] = start_model(args, quotes, sets)
    start = evaluate(model, sets, k=args.min_k)
    result["start"] = start
    print(f"fine-tuned in {result['finetune_s']:.0f}s:", start, flush=True)
    save()

    feats = None
    if {"kcenter", "craig"} & set(args.selectors.split(",")):
        feats = forget_features(args, model, sets, result)
        save()

    options = strategy_options(args)
    if "embedding_alignment" in args.strategies.split(","):
        from erasus.models import load_minilm

        options["embedding_alignment"]["text_encoder"] = load_minilm()
    full_steps = math.ceil(args.n_forget / args.batch_size) * args.epochs
    coreset_steps = max(1, int(args.coreset_budget * full_steps)) if args.coreset_budget > 0 else None
    from table import HEADER, row  # benches/llm/table.py, next to this script

    print(HEADER, flush=True)
    for strategy in args.strategies.split(","):
        scales = [float(x) for x in args.coreset_lr_scales.split(",")]
        plan = [("full", 1.0)] + [(sel, sc) for sel in filter(None, args.selectors.split(",")) for sc in scales]
        for selector, lr_scale in plan:
            full = selector == "full"
            opts = {**options[strategy], "lr": options[strategy]["lr"] * lr_scale}
            unlearner = erasus.ErasusUnlearner(model, strategy=strategy, selector=selector,
                                               prune_ratio=1.0 if full else args.prune_ratio, seed=args.seed, **opts)
            torch.manual_seed(args.seed)
            budget = {"epochs": args.epochs} if full or coreset_steps is None else {"steps": coreset_steps}
            out = unlearner.fit(sets["forget"], sets["retain"], features=None if full else feats, progress=True,
                                **budget)
            t = unlearner.timings_
            feature_s = result["features_s"] if selector in ("kcenter", "craig") else 0.0
            metrics = evaluate(out, sets, k=args.min_k)
            run = {"strategy": strategy, "selector": selector, "lr_scale": lr_scale, "k": len(unlearner.selection_),
                   "indices": unlearner.selection_.indices.tolist(),
                   "weights": unlearner.selection_.weights.tolist(), "steps": len(unlearner.history_),
                   "features_s": feature_s, "selection_s": t["selection_s"], "unlearning_s": t["unlearning_s"],
                   "time_s": feature_s + t["selection_s"] + t["unlearning_s"],
                   "options": {k: v for k, v in opts.items() if k != "text_encoder"},
                   "info": {k: v for k, v in unlearner.strategy.info_.items() if isinstance(v, (int, float, list))},
                   **metrics}
            result["runs"].append(run)
            save()
            full_run = next(r for r in result["runs"] if r["strategy"] == strategy and r["selector"] == "full")
            print(row(run, start, full_run), flush=True)
            del out, unlearner
    result["env"]["finished_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    save()


if __name__ == "__main__":
    main()
