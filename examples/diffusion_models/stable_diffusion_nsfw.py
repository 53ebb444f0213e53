"""Erase nudity from Stable Diffusion with UCE, a closed-form edit of the cross-attention keys and values (no
training), while preserving related safe concepts.

    python examples/diffusion_models/stable_diffusion_nsfw.py --tiny                            # offline, CPU
    python examples/diffusion_models/stable_diffusion_nsfw.py --model CompVis/stable-diffusion-v1-4 --out img/

UCE (Gandikota et al., "Unified Concept Editing in Diffusion Models", WACV 2024) solves, for every ``attn2.to_k``
/ ``to_v`` projection, the least-squares problem that maps each erased concept's text embedding to what the
guide concept (the empty prompt) produced, while preserved concepts keep their keys and values. The script
prints how far the edited projections moved the erased and the preserved concepts' keys / values from their
targets, the steering-direction cosines of every prompt before / after, and saves images with ``--out``. The
``--tiny`` pipeline is randomly initialised, so its concepts are not separated and every prompt's steering moves;
the keys / values check is exact there too.
"""

from __future__ import annotations

import torch

import erasus
from erasus.strategies.diffusion.uce import concept_embeddings

from common import concept_directions, direction_cosines, load, parse_args, report, save_images

ERASE = ["nudity", "naked person", "nsfw"]
PRESERVE = ["a person", "a portrait of a woman", "a man on the beach"]


def kv_errors(model, erased, concepts: list[str], targets: torch.Tensor) -> float:
    """Mean relative distance ``||W_new c - target|| / ||target||`` over every edited key / value projection."""
    emb = concept_embeddings(model, concepts)
    errs = []
    old, new = dict(model.named_modules()), dict(erased.named_modules())
    for name in model.cross_attention_modules():
        for proj in ("to_k", "to_v"):
            key = f"unet.{name}.{proj}" if f"unet.{name}.{proj}" in old else f"{name}.{proj}"
            w_old, w_new = old[key].weight.detach(), new[key].weight.detach()
            want = targets @ w_old.T
            errs.append(((emb @ w_new.T - want).norm(dim=1) / want.norm(dim=1).clamp_min(1e-12)).mean())
    return float(torch.stack(errs).mean())


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    model = load(args)
    prompts = ERASE + PRESERVE
    before = concept_directions(model, prompts, probes=4 if args.tiny else 8, seed=args.seed)
    if args.out:
        save_images(model, prompts, args.out, "before", seed=args.seed, steps=4 if args.tiny else 50)

    # mid level: the strategy on the model; UCE needs no steps, the retain prompts are the preserved concepts
    erased = erasus.get_strategy("uce", guide="").unlearn(model=model, forget_data=ERASE, retain_data=PRESERVE,
                                                         progress=False)
    after = concept_directions(erased, prompts, probes=4 if args.tiny else 8, seed=args.seed)
    if args.out:
        save_images(erased, prompts, args.out, "after", seed=args.seed, steps=4 if args.tiny else 50)

    guide = concept_embeddings(model, [""]).expand(len(ERASE), -1)
    print(f"erased concepts:    keys/values {kv_errors(model, erased, ERASE, guide):.3f} (relative) from the "
          "empty prompt's, the edit's target")
    print(f"preserved concepts: keys/values {kv_errors(model, erased, PRESERVE, concept_embeddings(model, PRESERVE)):.3f}"
          " (relative) from their own original ones")
    cos = direction_cosines(before, after)
    rows = [(p, "erase" if i < len(ERASE) else "keep", c) for i, (p, c) in enumerate(zip(prompts, cos))]
    report("UCE: how each prompt steers the denoiser, against before", rows)


if __name__ == "__main__":
    main()
