"""Remove a concept (everything about one invented author) from a LLaMA-architecture model with Adaptive RMU
(the mid-level API: a strategy from the registry, called on the model).

    python examples/language_models/llama_concept_removal.py --tiny                               # offline, CPU
    python examples/language_models/llama_concept_removal.py --model HuggingFaceTB/SmolLM2-135M   # any LLaMA checkpoint

RMU (Li et al., "The WMDP Benchmark", ICML 2024) pushes the forget texts' hidden states at one block towards a
fixed random direction ``c u`` while holding the retain texts' hidden states where the frozen model puts them;
Adaptive RMU (Dang et al., AAAI 2025) sets ``c`` from the model's own activation norm. It prints the answer
perplexity of both authors' facts before and after, and how far the forget texts' mean activation at that
block moved.
"""

from __future__ import annotations

import torch

import erasus
from erasus.data.llm import LMDataset
from erasus.models.llm import decoder_layers, layer_activations

from common import FORGET, RETAIN, Timer, learn, parse_args, perplexities, records, report, tiny_model, word_tokenizer


def mean_activation(model: torch.nn.Module, tok, texts: list[str], layer: int) -> torch.Tensor:
    return layer_activations(model, tok, texts, [layer])[f"layer_{layer}"].float().mean(dim=(0, 1))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_model="HuggingFaceTB/SmolLM2-135M")
    torch.manual_seed(args.seed)
    if args.tiny:
        tok = word_tokenizer()
        model = tiny_model("llama", len(tok), seed=args.seed)
    else:
        from erasus.models import LLaMAWrapper

        wrapper = LLaMAWrapper(args.model, device=args.device)  # refuses a checkpoint that is not LLaMA-family
        model, tok = wrapper.model, wrapper.tokenizer
    forget = LMDataset(records(FORGET), tok, max_length=48)
    retain = LMDataset(records(RETAIN), tok, max_length=48)
    learn(model, LMDataset(records(FORGET + RETAIN), tok, max_length=48),
          steps=150 if args.tiny else 30, lr=1e-2 if args.tiny else 5e-5)
    layer = len(decoder_layers(model)) // 2
    start = perplexities(model, tok, forget, retain)
    forget_texts = [q + " " + a for q, a in FORGET]
    before = mean_activation(model, tok, forget_texts, layer)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}

    rmu = erasus.get_strategy("rmu", steering_coeff="adaptive", layer=layer, update_layers=list(range(layer + 1)),
                              lr=3e-3 if args.tiny else 3e-4, alpha=100.0, batch_size=4)
    with Timer() as t:
        unlearned = rmu.unlearn(model=model, forget_data=forget, retain_data=retain, steps=40, seed=args.seed,
                                progress=False)
    end = perplexities(unlearned, tok, forget, retain)
    after = mean_activation(unlearned, tok, forget_texts, layer)
    print(f"layer {layer}: mean forget activation moved by {float((after - before).norm()):.2f} "
          f"(norm before {float(before.norm()):.2f}, after {float(after.norm()):.2f})")
    report(f"Adaptive RMU at block {layer}, answer perplexity", start, end, t.seconds)
    kept = all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())
    print(f"caller's model left untouched (inplace=False): {kept}")


if __name__ == "__main__":
    main()
