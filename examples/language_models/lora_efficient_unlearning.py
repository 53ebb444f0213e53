"""LoRA unlearning: the same NPO run with every weight trained, and through rank-8 LoRA adapters (peft) that
are merged back, so the result is a plain model of the original architecture.

    python examples/language_models/lora_efficient_unlearning.py --tiny          # offline, CPU
    python examples/language_models/lora_efficient_unlearning.py --model gpt2

Every gradient strategy takes ``lora=`` (a ``peft.LoraConfig`` or a dict of its options). It prints, for
both runs, the number of trained parameters, the answer perplexity of the forget and retain facts and the
wall time, and checks that the merged model has exactly the original's parameter names and shapes.
"""

from __future__ import annotations

import copy

import torch

import erasus
from erasus.data.llm import LMDataset

from common import FORGET, RETAIN, Timer, learn, load, parse_args, perplexities, records


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_model="gpt2")
    torch.manual_seed(args.seed)
    model, tok = load(args, family="gpt2")
    if getattr(model.config, "model_type", None) != "gpt2":
        raise SystemExit("this example's LoRA targets are GPT-2's c_attn / c_fc; use a GPT-2 checkpoint")
    forget = LMDataset(records(FORGET), tok, max_length=48)
    retain = LMDataset(records(RETAIN), tok, max_length=48)
    learn(model, LMDataset(records(FORGET + RETAIN), tok, max_length=48),
          steps=120 if args.tiny else 30, lr=1e-2 if args.tiny else 5e-5)
    start = perplexities(model, tok, forget, retain)

    # GPT-2 keeps its projections in transformers' Conv1D (weights stored transposed): name them, fan_in_fan_out
    lora = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["c_attn", "c_fc"], "fan_in_fan_out": True}
    import peft

    adapters = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(**lora))
    n_lora, n_all = adapters.get_nb_trainable_parameters()
    lr_full, lr_lora = (2e-3, 2e-2) if args.tiny else (2e-5, 2e-4)  # adapters start at zero: LoRA's usual 10x lr

    rows = []
    for name, opts, trained in (("full", {"lr": lr_full}, n_all), ("lora r=8", {"lr": lr_lora, "lora": lora}, n_lora)):
        npo = erasus.get_strategy("npo", retain_loss="kl", alpha=5.0, batch_size=4)
        with Timer() as t:
            out = npo.unlearn(model=model, forget_data=forget, retain_data=retain, epochs=10, seed=args.seed,
                              progress=False, **opts)
        rows.append((name, trained, perplexities(out, tok, forget, retain), t.seconds, out))

    print(f"start: forget ppl {start['forget_ppl']:.3f}, retain ppl {start['retain_ppl']:.3f}")
    print(f"{'run':10s}{'trained params':>16s}{'forget ppl':>12s}{'retain ppl':>12s}{'time s':>9s}")
    for name, trained, ppl, seconds, _ in rows:
        print(f"{name:10s}{trained:>16,d}{ppl['forget_ppl']:12.3f}{ppl['retain_ppl']:12.3f}{seconds:9.1f}")
    merged = rows[1][4]
    same = {k: v.shape for k, v in merged.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    print(f"LoRA trains {100 * n_lora / n_all:.1f}% of the parameters; merged model has the original's "
          f"parameters and shapes: {same}")


if __name__ == "__main__":
    main()
