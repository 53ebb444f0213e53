"""A TOFU-protocol benchmark (Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", 2024): unlearn a
forget split with several strategies, on the full split and on a 10% coreset, and score each result with
TOFU's forget quality (KS test of truth ratios against a retain-only model) and model utility.

    python examples/benchmarks/run_tofu_benchmark.py --tiny      # a mini-TOFU of two invented authors, offline
    python examples/benchmarks/run_tofu_benchmark.py \\
        --model open-unlearning/tofu_Llama-3.2-1B-Instruct_full \\
        --retain-model open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90 --split forget10 [--tofu-path DIR]

With ``--tiny`` the "finetuned" model learns both invented authors and the retain-only model only the second,
both here, in seconds; utility is then the mean over the retain components only (no real-authors / world-facts
sets), which is not TOFU's nine-component number. With real checkpoints the splits come from ``--tofu-path``
(the ``locuslab/TOFU`` files) or the hub, and all nine components are computed.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

import erasus
from erasus.data.llm import LMDataset, load_tofu

# the mini-TOFU corpus and tiny-model builders are shared with the language-model examples
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "language_models"))
from common import FORGET, RETAIN, learn, tiny_model, tofu_records, word_tokenizer  # noqa: E402

STRATEGIES = {  # name -> options (tiny, real); retain terms as OpenUnlearning's TOFU configs
    "gradient_ascent": ({"lr": 2e-3}, {"lr": 1e-5}),
    "grad_diff": ({"lr": 2e-3, "retain_loss": "kl", "alpha": 5.0}, {"lr": 1e-5}),
    "npo": ({"lr": 2e-3, "retain_loss": "kl", "alpha": 5.0}, {"lr": 1e-5}),
}


def data(args: argparse.Namespace) -> dict[str, list[dict]]:
    if args.tiny:
        return {"forget": tofu_records(FORGET, RETAIN), "retain": tofu_records(RETAIN, FORGET)}
    retain_split = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}[args.split]
    out = {"forget": load_tofu(f"{args.split}_perturbed", path=args.tofu_path),
           "retain_train": load_tofu(retain_split, path=args.tofu_path),
           "retain": load_tofu("retain_perturbed", path=args.tofu_path),
           "real_authors": load_tofu("real_authors_perturbed", path=args.tofu_path),
           "world_facts": load_tofu("world_facts_perturbed", path=args.tofu_path)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="mini-TOFU and tiny GPT-2 models built offline")
    p.add_argument("--model", default="open-unlearning/tofu_Llama-3.2-1B-Instruct_full")
    p.add_argument("--retain-model", default="open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90")
    p.add_argument("--split", default="forget10", choices=["forget01", "forget05", "forget10"])
    p.add_argument("--tofu-path", default=None, help="folder with the TOFU split files (default: the hub)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--epochs", type=float, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    sets = data(args)
    if args.tiny:
        tok = word_tokenizer()
        # TOFU's truth ratio needs a model that rates a paraphrase of a fact like the fact itself, which a
        # large LM does from its pretraining; these tiny ones learn the paraphrases along with the facts
        taught = {k: [{"prompt": r["prompt"], "answer": a} for r in v for a in (r["answer"], r["paraphrased_answer"])]
                  for k, v in sets.items()}
        model = learn(tiny_model("gpt2", len(tok), seed=args.seed),
                      LMDataset(taught["forget"] + taught["retain"], tok, max_length=48), steps=150, lr=1e-2)
        oracle = learn(tiny_model("gpt2", len(tok), seed=args.seed + 1),
                       LMDataset(taught["retain"], tok, max_length=48), steps=150, lr=1e-2)
        utility_sets: dict = {}
    else:
        from erasus.models import load_causal_lm

        model, tok = load_causal_lm(args.model)
        oracle, _ = load_causal_lm(args.retain_model)
        utility_sets = {"real_authors": sets["real_authors"], "world_facts": sets["world_facts"]}
    forget = LMDataset(sets["forget"], tok, max_length=48 if args.tiny else 512)
    retain = LMDataset(sets.get("retain_train", sets["retain"]), tok, max_length=48 if args.tiny else 512)
    fq = erasus.get_metric("forget_quality", tokenizer=tok)
    mu = erasus.get_metric("model_utility", tokenizer=tok, max_new_tokens=16 if args.tiny else 200, **utility_sets)

    def score(m: torch.nn.Module) -> tuple[float, float]:
        u = mu.compute(m, sets["retain"])
        return fq.compute(m, sets["forget"], reference_model=oracle)["forget_quality"], u["model_utility"]

    rows = [("finetuned (no unlearning)", "-", *score(model), 0.0), ("retain-only model", "-", *score(oracle), 0.0)]
    for name in args.strategies.split(","):
        opts = STRATEGIES[name][0 if args.tiny else 1]
        for selector, ratio in (("full", 1.0), ("kcenter", 0.1 if not args.tiny else 0.3)):
            unlearner = erasus.ErasusUnlearner(copy.deepcopy(model), strategy=name, selector=selector,
                                               seed=args.seed, batch_size=4, **opts)
            t0 = time.perf_counter()
            out = unlearner.fit(forget, retain, prune_ratio=ratio, epochs=args.epochs, progress=False)
            rows.append((name, f"{selector} ({len(unlearner.selection_)})", *score(out), time.perf_counter() - t0))

    print(f"\nTOFU protocol, {'mini-TOFU (--tiny)' if args.tiny else args.split}: forget quality is a KS p-value "
          "(higher = closer to the retain-only model), model utility a harmonic mean (higher = better)")
    print(f"{'model':28s}{'forget set':>14s}{'forget quality':>16s}{'model utility':>15s}{'time s':>8s}")
    for name, sel, q, u, s in rows:
        print(f"{name:28s}{sel:>14s}{q:16.4f}{u:15.4f}{s:8.1f}")


if __name__ == "__main__":
    main()
