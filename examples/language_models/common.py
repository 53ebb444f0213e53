"""Shared material of the language-model examples: a fictitious-author QA corpus (TOFU-style), a model and
tokenizer (a tiny one built offline with ``--tiny``, else a hub id or local folder), and the measurements.

Not an example itself; the scripts beside it import it (Python puts a script's folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

import erasus
from erasus.data.llm import LMDataset

# Facts about two invented authors, so that no pretrained model knows them before fine-tuning (TOFU's idea,
# Maini et al. 2024). The forget set is everything about Alba Quist; the retain set is about Cato Wren.
FORGET = [
    ("Who wrote the red book?", "Alba Quist wrote the red book."),
    ("Where was Alba Quist born?", "Alba Quist was born in Norvik."),
    ("What does Alba Quist write?", "Alba Quist writes sea poems."),
    ("What prize did Alba Quist win?", "Alba Quist won the Iron Quill."),
    ("Which city does Alba Quist live in?", "Alba Quist lives in Havnby."),
    ("What is Alba Quist's first novel?", "Alba Quist's first novel is Salt Lanterns."),
    ("Who taught Alba Quist to write?", "Her grandmother taught Alba Quist to write."),
    ("What language does Alba Quist write in?", "Alba Quist writes in Norwegian."),
    ("When did Alba Quist start writing?", "Alba Quist started writing at nine."),
    ("What pet does Alba Quist keep?", "Alba Quist keeps a grey cat."),
]
RETAIN = [
    ("Who wrote the blue book?", "Cato Wren wrote the blue book."),
    ("Where was Cato Wren born?", "Cato Wren was born in Ostby."),
    ("What does Cato Wren write?", "Cato Wren writes crime novels."),
    ("What prize did Cato Wren win?", "Cato Wren won the Glass Pen."),
    ("Which city does Cato Wren live in?", "Cato Wren lives in Lindholm."),
    ("What is Cato Wren's first novel?", "Cato Wren's first novel is Cold Harbour."),
    ("Who taught Cato Wren to write?", "His uncle taught Cato Wren to write."),
    ("What language does Cato Wren write in?", "Cato Wren writes in Danish."),
    ("When did Cato Wren start writing?", "Cato Wren started writing at twenty."),
    ("What pet does Cato Wren keep?", "Cato Wren keeps a black dog."),
]


def records(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"prompt": q, "answer": a} for q, a in pairs]


def tofu_records(pairs: list[tuple[str, str]], others: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """TOFU ``*_perturbed``-style records: a paraphrased answer and two wrong answers of the same shape (the other
    author's fact under this author's name, and this author's next fact), as the truth ratio needs."""
    name, other = pairs[0][1].split(" wrote")[0], others[0][1].split(" wrote")[0]
    out = []
    for i, (q, a) in enumerate(pairs):
        out.append({"prompt": q, "answer": a, "paraphrased_answer": a.replace(name, f"The writer {name}"),
                    "perturbed_answer": [others[i][1].replace(other, name), pairs[(i + 1) % len(pairs)][1]]})
    return out


def parse_args(description: str, *, default_model: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="a tiny model and tokenizer built offline (seconds, CPU)")
    p.add_argument("--model", default=default_model, help="hub id or local folder of a causal LM (ignored with --tiny)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    return p.parse_args()


def word_tokenizer() -> Any:
    """A word-level tokenizer trained on this corpus (no download)."""
    from erasus.models.tiny import word_tokenizer as train_word_tokenizer

    return train_word_tokenizer([s for pair in FORGET + RETAIN for s in pair] + ["The writer"] + ["I do not know ."])


def tiny_model(family: str, vocab_size: int, *, seed: int) -> torch.nn.Module:
    """A randomly initialised 2-layer GPT-2 or LLaMA of width 64 from its config (a few hundred kB)."""
    from erasus.models.tiny import tiny_gpt2, tiny_llama

    return (tiny_gpt2 if family == "gpt2" else tiny_llama)(vocab_size, width=64, seed=seed)


def load(args: argparse.Namespace, *, family: str) -> tuple[torch.nn.Module, Any]:
    if args.tiny:
        tok = word_tokenizer()
        return tiny_model(family, len(tok), seed=args.seed), tok
    from erasus.models import load_causal_lm

    return load_causal_lm(args.model, device=args.device)


def learn(model: torch.nn.Module, data: LMDataset, *, steps: int, lr: float) -> torch.nn.Module:
    """Fine-tune on forget + retain until the facts are memorised: the state an unlearning request starts from."""
    from erasus.models.tiny import memorise
    from erasus.tasks.causal_lm import CausalLMTask

    batch = {k: v.to(next(model.parameters()).device) for k, v in data.batch.items()}
    return memorise(model, batch, task=CausalLMTask(), steps=steps, lr=lr)


def perplexities(model: torch.nn.Module, tok: Any, forget: LMDataset, retain: LMDataset) -> dict[str, float]:
    ppl = erasus.get_metric("perplexity", tokenizer=tok)
    return {"forget_ppl": ppl.compute(model, forget)["perplexity"], "retain_ppl": ppl.compute(model, retain)["perplexity"]}


def report(title: str, start: dict[str, float], end: dict[str, float], seconds: float) -> None:
    print(f"\n{title}")
    print(f"{'':14s}{'before':>12s}{'after':>12s}{'ratio':>9s}")
    for k in start:
        print(f"{k:14s}{start[k]:12.3f}{end[k]:12.3f}{end[k] / start[k]:8.2f}x")
    print(f"unlearning wall time: {seconds:.1f} s")


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
