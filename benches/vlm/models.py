"""The start models and oracles of the measured run, trained once and cached under ``benches/vlm/.cache``.

    python benches/vlm/models.py            # trains whatever is not cached yet (about 40 min on 2 loaded cores)
    python benches/vlm/models.py --families clip --kinds oracle     # one of them (run several in parallel)
    python benches/vlm/models.py --train-seed 1                     # a second training seed of both

``start``: the recipe of :func:`common.train_dual_encoder` on every training image; ``oracle``: the same
recipe (same seed, epochs, learning rate) on the training images without the forget class. The cache key
is a hash of the data sizes, the recipe and the forget class, so changing any of them retrains.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

RECIPES = {"minilm": {"epochs": 10, "lr": 2e-3}, "clip": {"epochs": 24, "lr": 3e-3}}


def tokenizer_and_factory(family: str) -> tuple[Any, Any]:
    """``(tokenizer, () -> fresh untrained model)`` of a family."""
    if family == "minilm":
        from erasus.models import load_minilm

        encoder = load_minilm()
        return common.MiniLMTokenizer(encoder.tokenizer), lambda: common.MiniLMDualEncoder(encoder)
    if family == "clip":
        words = common.WordTokenizer([t.format(c) for t in common.TEMPLATES for c in common.CLASSES])
        return words, lambda: common.small_clip(len(words))
    raise ValueError(f"unknown family {family!r}; expected 'minilm' or 'clip'")


def trained(family: str, kind: str, *, data: dict[str, torch.Tensor], forget_class: int, n_train: int, n_test: int,
            seed: int = 0, factory: Any, tokenizer: Any, log: Any = print) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The cached (or freshly trained) ``start`` / ``oracle`` model of ``family`` and its training record."""
    recipe = RECIPES[family]
    key = common.fingerprint(family=family, kind=kind, forget_class=forget_class if kind == "oracle" else None,
                             n_train=n_train, n_test=n_test, seed=seed, **recipe)
    folder = common.CACHE / f"{family}-{kind}-{key}"
    model = factory()
    if (folder / "weights.pt").is_file():
        model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
        return model.eval(), json.loads((folder / "record.json").read_text())
    x, y = data["x_train"], data["y_train"]
    if kind == "oracle":
        keep = y != forget_class
        x, y = x[keep], y[keep]
    log(f"  training {family} {kind} on {len(x)} images ({recipe})")
    torch.manual_seed(seed)
    model = factory()
    record = common.train_dual_encoder(model, tokenizer, x, y, seed=seed, log=log, **recipe)
    record["zero_shot"] = common.zero_shot_accuracy(model, tokenizer, data["x_test"], data["y_test"],
                                                    forget_class=forget_class)
    record.update(recipe=recipe, n_images=len(x))
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "record.json").write_text(json.dumps(record))
    log(f"  {family} {kind}: {record['zero_shot']} in {record['seconds']:.0f} s")
    return model.eval(), record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default="minilm,clip")
    parser.add_argument("--kinds", default="start,oracle")
    parser.add_argument("--forget-class", type=int, help="default: common.FORGET_CLASS of the family")
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--train-seed", type=int, default=0, help="seed of the training recipe (init + batch order)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = common.load_data(n_train=args.n_train, n_test=args.n_test)
    for family in args.families.split(","):
        tokenizer, factory = tokenizer_and_factory(family)
        for kind in args.kinds.split(","):
            fc = common.FORGET_CLASS[family] if args.forget_class is None else args.forget_class
            _, rec = trained(family, kind, data=data, forget_class=fc, n_train=args.n_train, n_test=args.n_test,
                             seed=args.train_seed, factory=factory, tokenizer=tokenizer)
            print(f"{family} {kind} seed {args.train_seed}: {rec['zero_shot']} ({rec['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
