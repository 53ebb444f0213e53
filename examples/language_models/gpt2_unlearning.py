"""Unlearn an invented author's facts from GPT-2 with NPO on a k-center coreset (the high-level API).

    python examples/language_models/gpt2_unlearning.py --tiny          # a 2-layer GPT-2 built offline, ~1 min CPU
    python examples/language_models/gpt2_unlearning.py --model gpt2    # the hub model (needs network once)

The model is first fine-tuned on facts about two invented authors (it starts knowing neither), then asked to
forget one of them. NPO (Zhang et al., COLM 2024) runs on a 30% k-center coreset of the forget set chosen on
projected per-sample gradients, with a KL retain term that keeps the other author's facts. It prints the
answer perplexity of the forget and the retain facts before and after: forgetting shows as a rise of the
first with the second held near where it was.
"""

from __future__ import annotations

import torch

import erasus
from erasus.data.llm import LMDataset

from common import FORGET, RETAIN, Timer, learn, load, parse_args, perplexities, records, report


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_model="gpt2")
    torch.manual_seed(args.seed)
    model, tok = load(args, family="gpt2")
    forget = LMDataset(records(FORGET), tok, max_length=48)
    retain = LMDataset(records(RETAIN), tok, max_length=48)
    learn(model, LMDataset(records(FORGET + RETAIN), tok, max_length=48),
          steps=120 if args.tiny else 30, lr=1e-2 if args.tiny else 5e-5)
    start = perplexities(model, tok, forget, retain)

    unlearner = erasus.ErasusUnlearner(model, strategy="npo", selector="kcenter", seed=args.seed,
                                       lr=2e-3 if args.tiny else 2e-5, retain_loss="kl", alpha=5.0, batch_size=4)
    with Timer() as t:
        unlearned = unlearner.fit(forget, retain, prune_ratio=0.3, epochs=10, progress=False)
    end = perplexities(unlearned, tok, forget, retain)

    print(f"coreset: {len(unlearner.selection_)} of {len(forget)} forget facts, rows "
          f"{sorted(unlearner.selection_.indices.tolist())} (k-center on per-sample gradients)")
    print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in unlearner.timings_.items()))
    report("NPO on the coreset, answer perplexity", start, end, t.seconds)


if __name__ == "__main__":
    main()
