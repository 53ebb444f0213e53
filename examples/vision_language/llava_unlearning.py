"""Unlearn image-grounded answers from LLaVA: the model stops naming the person in one image while it still
answers about another (NPO through the multimodal task adapter, the mid-level API).

    python examples/vision_language/llava_unlearning.py --tiny                             # offline, CPU
    python examples/vision_language/llava_unlearning.py --model llava-hf/llava-1.5-7b-hf   # any LLaVA checkpoint

``LLaVAWrapper.dataset`` turns ``{"image", "question", "answer"}`` records into answer-only-loss samples; the
LLM strategies (NPO here, Zhang et al. COLM 2024) run on them unchanged. It prints the mean answer NLL of the
forget and the retain records and the greedy answer to "Who is this?" for both images, before and after.
"""

from __future__ import annotations

import argparse
import copy

import torch

import erasus
from erasus.models import LLaVAWrapper

FORGET_QA = [("Who is this?", "This is Alba Quist."), ("Where was this person born?", "Alba Quist was born in Norvik."),
             ("What does this person write?", "Alba Quist writes sea poems.")]
RETAIN_QA = [("Who is this?", "This is Cato Wren."), ("Where was this person born?", "Cato Wren was born in Ostby."),
             ("What does this person write?", "Cato Wren writes crime novels.")]


def tiny_llava(seed: int) -> LLaVAWrapper:
    """A CLIP-vision + LLaMA LLaVA from tiny configs and a word-level tokenizer with an ``<image>`` token."""
    from erasus.models import tiny

    tokenizer = tiny.word_tokenizer([s for q, a in FORGET_QA + RETAIN_QA for s in (q, a)] + ["USER:", "ASSISTANT:"],
                                    extra_special_tokens={"image_token": "<image>"})
    return LLaVAWrapper(tiny.tiny_llava(tokenizer, image_size=16, patch_size=4, seed=seed), tokenizer=tokenizer)


def two_images(tiny: bool, seed: int) -> list:
    """Two distinct "faces": preprocessed (3, 16, 16) tensors for the tiny model, PIL images otherwise."""
    g = torch.Generator().manual_seed(seed)
    if tiny:
        return list(torch.randn(2, 3, 16, 16, generator=g))
    from PIL import Image

    return [Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).byte().numpy()) for _ in range(2)]


def answer_nll(w: LLaVAWrapper, ds) -> float:
    with torch.no_grad():
        return float(w.task().per_sample_loss(w, ds[:]).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a tiny LLaVA built offline (CPU, seconds)")
    p.add_argument("--model", default="llava-hf/llava-1.5-7b-hf", help="hub id or local LLaVA folder")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    w = tiny_llava(args.seed) if args.tiny else LLaVAWrapper(args.model)
    img = two_images(args.tiny, args.seed)
    forget = w.dataset([{"image": img[0], "question": q, "answer": a} for q, a in FORGET_QA])
    retain = w.dataset([{"image": img[1], "question": q, "answer": a} for q, a in RETAIN_QA])

    # teach the model both identities first: the state an unlearning request starts from
    both = w.dataset([{"image": img[0], "question": q, "answer": a} for q, a in FORGET_QA]
                     + [{"image": img[1], "question": q, "answer": a} for q, a in RETAIN_QA])
    opt = torch.optim.AdamW(w.parameters(), lr=1e-2 if args.tiny else 1e-5)
    w.train()
    for _ in range(80 if args.tiny else 10):
        opt.zero_grad()
        w.task().loss(w, both[:]).backward()
        opt.step()
    w.eval()

    start = {"forget_nll": answer_nll(w, forget), "retain_nll": answer_nll(w, retain)}
    said = [w.generate_with_image(i, "Who is this?", max_new_tokens=8) for i in img]
    snapshot = copy.deepcopy(w.state_dict())
    npo = erasus.get_strategy("npo", lr=5e-3 if args.tiny else 1e-5, optimizer="adamw", retain_loss="kl", alpha=5.0)
    out = npo.unlearn(model=w, forget_data=forget, retain_data=retain, steps=20, seed=args.seed, progress=False)
    end = {"forget_nll": answer_nll(out, forget), "retain_nll": answer_nll(out, retain)}

    print(f"{'':12s}{'before':>10s}{'after':>10s}")
    for k in start:
        print(f"{k:12s}{start[k]:10.3f}{end[k]:10.3f}")
    for name, image, before in zip(("forget image", "retain image"), img, said):
        print(f"{name}: 'Who is this?' -> before {before!r}, after "
              f"{out.generate_with_image(image, 'Who is this?', max_new_tokens=8)!r}")
    print(f"caller's model untouched: {all(torch.equal(v, snapshot[k]) for k, v in w.state_dict().items())}")


if __name__ == "__main__":
    main()
