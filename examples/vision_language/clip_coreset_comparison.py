"""Which coreset forgets a CLIP class best? The same unlearning run on the full forget set and on 10% coresets
picked by several selectors, side by side.

    python examples/vision_language/clip_coreset_comparison.py --tiny                    # offline, CPU
    python examples/vision_language/clip_coreset_comparison.py --model openai/clip-vit-base-patch32

Each row is ``ErasusUnlearner(clip, strategy="modality_decoupling", selector=S).fit(..., prune_ratio=0.1)`` with
the same step budget, selection on the start model's joint image-text embeddings. It prints zero-shot top-1
on the forget and the retain classes and the wall time of each row (selection included). On this toy data
every selector should forget; the measured comparison on Fashion-MNIST is in ``benches/vlm/RESULTS.md``.
"""

from __future__ import annotations

import erasus

from common import Timer, load, parse_args, zero_shot

SELECTORS = ("full", "random", "kcenter", "herding", "craig")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    clip, data = load(args)
    start = zero_shot(clip, data["test"])
    lr = {"vision_lr": 1e-3, "text_lr": 1e-3} if args.tiny else {"vision_lr": 1e-6, "text_lr": 1e-5}
    rows = []
    for name in SELECTORS:
        unlearner = erasus.ErasusUnlearner(clip, strategy="modality_decoupling", selector=name, seed=args.seed,
                                           features="embeddings", **lr)
        with Timer() as t:
            unlearned = unlearner.fit(forget_data=data["forget"], retain_data=data["retain"],
                                      prune_ratio=1.0 if name == "full" else 0.1, steps=40, progress=False)
        rows.append((name, len(unlearner.selection_), zero_shot(unlearned, data["test"]), t.seconds))

    print(f"start model: forget top-1 {start['forget_top1']:.3f}, retain top-1 {start['retain_top1']:.3f}")
    print(f"{'selector':10s}{'k':>4s}{'forget top-1':>14s}{'retain top-1':>14s}{'time s':>9s}")
    for name, k, acc, seconds in rows:
        print(f"{name:10s}{k:4d}{acc['forget_top1']:14.3f}{acc['retain_top1']:14.3f}{seconds:9.1f}")


if __name__ == "__main__":
    main()
