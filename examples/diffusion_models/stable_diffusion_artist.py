"""Erase an artist's style from Stable Diffusion with ESD-x (cross-attention only), optionally on a coreset of
the style's prompts, and check that other artists' prompts still steer the model as before.

    python examples/diffusion_models/stable_diffusion_artist.py --tiny                          # offline, CPU
    python examples/diffusion_models/stable_diffusion_artist.py --model CompVis/stable-diffusion-v1-4 --out img/

ESD (Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023) fine-tunes the UNet so that its
prediction for the erased prompt follows negative guidance away from it, as a frozen copy computes it; the
paper uses the cross-attention variant (ESD-x) for artistic styles. The script prints, for every prompt, the
cosine between the direction the prompt steers the denoiser after unlearning and before (1 = unchanged,
below 0 = it now points away), the mean over the forget and over the retain prompts, and saves before / after
images with ``--out``. The ``--tiny`` pipeline is randomly initialised: its text encoder does not tell one artist
from another, so every prompt moves about alike there; the run checks the pipeline, and selectivity shows on a
trained model.
"""

from __future__ import annotations

import erasus

from common import concept_directions, direction_cosines, load, parse_args, report, save_images

ARTIST = "Van Gogh"
FORGET = [f"a painting in the style of {ARTIST}", f"starry night by {ARTIST}", f"a {ARTIST} landscape",
          f"sunflowers, {ARTIST} style"]
RETAIN = ["a painting in the style of Claude Monet", "a portrait by Rembrandt", "a photo of a city street"]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    model = load(args)
    prompts = FORGET + RETAIN
    probes = 4 if args.tiny else 8
    before = concept_directions(model, prompts, probes=probes, seed=args.seed)
    steps, sampling = (20, 4) if args.tiny else (200, 50)
    if args.out:
        save_images(model, prompts, args.out, "before", seed=args.seed, steps=sampling)

    # high level: ESD on a 50% k-center coreset of the style's prompts (selected on their text embeddings)
    unlearner = erasus.ErasusUnlearner(model, strategy="esd", selector="kcenter", seed=args.seed, variant="x",
                                       num_inference_steps=sampling, lr=1e-3 if args.tiny else 1e-5)
    erased = unlearner.fit(forget_data=FORGET, prune_ratio=0.5, steps=steps, progress=False)
    after = concept_directions(erased, prompts, probes=probes, seed=args.seed)
    if args.out:
        save_images(erased, prompts, args.out, "after", seed=args.seed, steps=sampling)

    chosen = sorted(unlearner.selection_.indices.tolist())
    print(f"coreset: {len(chosen)} of {len(FORGET)} style prompts: {[FORGET[i] for i in chosen]}")
    cos = direction_cosines(before, after)
    rows = [(p, "forget" if i < len(FORGET) else "retain", c) for i, (p, c) in enumerate(zip(prompts, cos))]
    report(f"ESD-x, {steps} steps: how each prompt steers the denoiser, against before", rows)
    n = len(FORGET)
    print(f"mean cosine: forget prompts {sum(cos[:n]) / n:.3f}, retain prompts {sum(cos[n:]) / len(RETAIN):.3f}")
    print("timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in unlearner.timings_.items()))


if __name__ == "__main__":
    main()
