"""Forget one class ("red") from a CLIP model with modality decoupling on a coreset (the high-level API).

    python examples/vision_language/clip_basic.py --tiny                                 # offline, CPU
    python examples/vision_language/clip_basic.py --model openai/clip-vit-base-patch32

``ErasusUnlearner`` picks a 10% coreset of the forget pairs (``selector="auto"``) and runs
``modality_decoupling``: gradient ascent on the forget pairs' contrastive loss with a learning rate per tower,
then a retain alignment phase. It prints zero-shot top-1 accuracy on the forget and the retain classes
before and after, the retain pairs' retrieval Recall@1, and how far each tower's retain embeddings moved
(the ``cascade`` metric).
"""

from __future__ import annotations

import erasus

from common import Timer, load, parse_args, zero_shot


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    clip, data = load(args)
    start = {**zero_shot(clip, data["test"]),
             "retain_R@1": erasus.get_metric("retrieval", ks=[1]).compute(clip, data["retain"])["mean_recall@1"]}

    unlearner = erasus.ErasusUnlearner(clip, strategy="modality_decoupling", selector="auto", seed=args.seed,
                                       vision_lr=1e-3 if args.tiny else 1e-6, text_lr=1e-3 if args.tiny else 1e-5)
    with Timer() as t:
        unlearned = unlearner.fit(forget_data=data["forget"], retain_data=data["retain"], prune_ratio=0.1, steps=40,
                                  progress=False)
    end = {**zero_shot(unlearned, data["test"]),
           "retain_R@1": erasus.get_metric("retrieval", ks=[1]).compute(unlearned, data["retain"])["mean_recall@1"]}
    cascade = erasus.get_metric("cascade").compute(unlearned, data["retain"], original=clip)

    choice = unlearner.selection_.metadata.get("auto", {})
    print(f"coreset: {len(unlearner.selection_)} of {len(data['forget'])} forget pairs; 'auto' chose "
          f"{choice.get('choice')!r} because {choice.get('reason')}")
    print(f"{'':14s}{'before':>8s}{'after':>8s}")
    for k in start:
        print(f"{k:14s}{start[k]:8.3f}{end[k]:8.3f}")
    print("cascade (cosine distance of retain embeddings from the start model's): "
          + ", ".join(f"{k} {v:.3f}" for k, v in cascade.items()))
    print(f"unlearning wall time: {t.seconds:.1f} s")


if __name__ == "__main__":
    main()
