"""Train the measured run's models (cached under ``.cache/``, resumable from the last checkpoint):

* ``classifier``: the judge of samples (and the FID/KID feature extractor), a CNN on the chosen classes;
* ``original``: the text-conditioned pixel-space diffusion model on every chosen class;
* ``oracle``: the same recipe without the forget class (the retrained-from-scratch reference);
* ``clip``: a tiny ``transformers.CLIPModel`` trained contrastively (CLIP's symmetric InfoNCE, Radford et al. 2021)
  on the captioned images, for the run's CLIP score.

    OMP_NUM_THREADS=1 python benches/diffusion/train.py classifier
    OMP_NUM_THREADS=1 python benches/diffusion/train.py original   # and `oracle`, in parallel if cores allow

Captions are ``TEMPLATES`` over the class name; 10% are dropped to the empty prompt so classifier-free
guidance (and ESD's unconditional term) have an unconditional model. The saved pipeline holds EMA weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
# default classes t-shirt, trouser, dress, sneaker, bag (distinct enough for a 16x16 judge); forget dress
from common import (CACHE, CLASSES, FMNIST_NAMES, FORGET, TEMPLATES, Classifier, build_clip, build_pipeline,  # noqa: E402
                    clip_processor, encode, fmnist)


def train_classifier(*, classes=CLASSES, epochs: int = 2, seed: int = 0) -> None:
    out = CACHE / "classifier.pt"
    if out.exists():
        print("classifier cached", out)
        return
    torch.manual_seed(seed)
    x, y = fmnist(classes, split="train")
    xte, yte = fmnist(classes, split="test")
    clf = Classifier(len(classes))
    opt = torch.optim.Adam(clf.parameters(), 1e-3)
    for ep in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            b = perm[i:i + 128]
            loss = F.cross_entropy(clf(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = (clf(xte).argmax(1) == yte).float().mean().item()
        print(f"classifier epoch {ep} test acc {acc:.4f}", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save({"state": clf.state_dict(), "classes": list(classes), "test_acc": acc}, out)


def train_clip(*, classes=CLASSES, steps: int = 300, batch: int = 64, lr: float = 1e-3, seed: int = 0) -> None:
    """A tiny CLIP on (image, caption) pairs of the chosen classes, saved with ``save_pretrained``; a batch holds
    distinct classes' captions as negatives, as CLIP's contrastive loss needs (duplicate captions are masked as
    positives, since two images of one class under one template are not negatives of each other)."""
    out = CACHE / "clip"
    if (out / "config.json").exists():
        print("clip cached", out)
        return
    torch.manual_seed(seed)
    clip = build_clip()
    proc = clip_processor()
    x, y = fmnist(classes, split="train")
    names = [FMNIST_NAMES[c] for c in classes]
    opt = torch.optim.AdamW(clip.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for step in range(steps):
        b = torch.randint(0, len(x), (batch,))
        tpl = torch.randint(0, len(TEMPLATES), (batch,))
        captions = [TEMPLATES[int(t)].format(names[int(c)]) for t, c in zip(tpl, y[b])]
        inputs = proc(text=captions, images=list(x[b]))
        logits = clip(**inputs).logits_per_image
        same = torch.tensor([[a == c for c in captions] for a in captions], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 50 == 0:
            print(f"clip step {step + 1}/{steps} loss {loss.item():.4f}", flush=True)
    clip.save_pretrained(str(out))
    print("clip saved", out, flush=True)


def train_diffusion(name: str, *, classes, steps: int, batch: int, lr: float, seed: int = 0,
                    p_uncond: float = 0.1, ema_decay: float = 0.995, ckpt_every: int = 100,
                    max_minutes: float | None = None) -> None:
    folder = CACHE / name
    if (folder / "model_index.json").exists():
        print(name, "cached", folder)
        return
    torch.manual_seed(seed)
    pipe = build_pipeline(seed=seed)
    x, y = fmnist(classes, split="train")
    x = x * 2 - 1
    names = [FMNIST_NAMES[c] for c in classes]
    prompts = [t.format(n) for n in names for t in TEMPLATES] + [""]
    params = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    ema = {"unet": copy.deepcopy(pipe.unet).requires_grad_(False),
           "text": copy.deepcopy(pipe.text_encoder).requires_grad_(False)}
    ckpt = CACHE / f"{name}.ckpt.pt"
    start, log = 0, []
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        pipe.unet.load_state_dict(st["unet"])
        pipe.text_encoder.load_state_dict(st["text"])
        ema["unet"].load_state_dict(st["ema_unet"])
        ema["text"].load_state_dict(st["ema_text"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        torch.set_rng_state(st["rng"])
        start, log = st["step"], st["log"]
        print(f"{name}: resumed at step {start}", flush=True)
    nsch = pipe.scheduler
    acp = nsch.alphas_cumprod
    t0 = time.time()
    n_t = len(TEMPLATES)
    for step in range(start, steps):
        b = torch.randint(0, len(x), (batch,))
        x0 = x[b]
        pidx = y[b] * n_t + torch.randint(0, n_t, (batch,))
        pidx = torch.where(torch.rand(batch) < p_uncond, torch.full_like(pidx, len(prompts) - 1), pidx)
        emb_all = encode(pipe, prompts)
        t = torch.randint(0, nsch.config.num_train_timesteps, (batch,))
        noise = torch.randn_like(x0)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(pipe.unet(xt, t, emb_all[pidx]).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        d = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for live, avg in ((pipe.unet, ema["unet"]), (pipe.text_encoder, ema["text"])):
                for p, q in zip(live.parameters(), avg.parameters()):
                    q.lerp_(p, 1 - d)
        log.append(float(loss.detach()))
        if (step + 1) % 25 == 0:
            print(f"{name} step {step + 1}/{steps} loss(25) {sum(log[-25:]) / 25:.4f} "
                  f"{(time.time() - t0) / (step + 1 - start):.2f}s/step", flush=True)
        out_of_time = max_minutes is not None and time.time() - t0 > 60 * max_minutes
        if (step + 1) % ckpt_every == 0 or step + 1 == steps or out_of_time:
            torch.save({"unet": pipe.unet.state_dict(), "text": pipe.text_encoder.state_dict(),
                        "ema_unet": ema["unet"].state_dict(), "ema_text": ema["text"].state_dict(),
                        "opt": opt.state_dict(), "sched": sched.state_dict(), "rng": torch.get_rng_state(),
                        "step": step + 1, "log": log}, ckpt)
        if out_of_time:
            print(f"{name}: wall budget of {max_minutes} min spent at step {step + 1}", flush=True)
            break
    pipe.unet.load_state_dict(ema["unet"].state_dict())
    pipe.text_encoder.load_state_dict(ema["text"].state_dict())
    pipe.save_pretrained(str(folder))
    (folder / "train_info.json").write_text(json.dumps({
        "classes": list(classes), "names": names, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
        "steps_done": len(log),
        "p_uncond": p_uncond, "ema_decay": ema_decay, "final_loss_100": sum(log[-100:]) / min(100, len(log)),
        "unet_params": sum(p.numel() for p in pipe.unet.parameters()),
        "text_params": sum(p.numel() for p in pipe.text_encoder.parameters())}, indent=1))
    print(name, "saved", folder, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["classifier", "clip", "original", "oracle"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this much wall time")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.what == "classifier":
        train_classifier()
    elif a.what == "clip":
        train_clip()
    elif a.what == "original":
        train_diffusion("original", classes=CLASSES, steps=a.steps, batch=a.batch, lr=a.lr,
                        max_minutes=a.max_minutes)
    else:
        train_diffusion("oracle", classes=tuple(c for c in CLASSES if c != FORGET), steps=a.steps, batch=a.batch,
                        lr=a.lr, max_minutes=a.max_minutes)


if __name__ == "__main__":
    main()
