"""LLM unlearning data: TOFU, MUSE, WMDP-style multiple choice and plain-text corpora.

Everything becomes a list of records ``{"prompt": str, "answer": str, ...}`` (extra fields such as TOFU's
``paraphrased_answer``/``perturbed_answer`` ride along for the metrics). :class:`LMDataset` tokenizes the
records once (answer-only labels, see :mod:`erasus.tasks.causal_lm`) and pads them to the dataset's longest
sample, so the default collate, :class:`erasus.data.IndexedDataset` and coreset :func:`erasus.data.subset`
all work on it unchanged; :class:`LMCollator` pads dynamically for loaders built from raw records.

Files are read locally (JSON list, JSON lines, parquet) with the hub datasets' schemas; the hub is used
only when ``path`` is None and the ``datasets`` package is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import ErasusTypeError, InvalidInputError, require
from ..tasks.causal_lm import encode_prompt_answer, pad_encoded
from ._records import read_json_or_lines

__all__ = [
    "MUSE_SPLITS",
    "TOFU_SPLITS",
    "LMCollator",
    "LMDataset",
    "format_multiple_choice",
    "load_multiple_choice",
    "load_muse",
    "load_text",
    "load_tofu",
    "read_records",
]

TOFU_HUB = "locuslab/TOFU"
TOFU_SPLITS = (
    "full",
    "forget01",
    "forget05",
    "forget10",
    "retain90",
    "retain95",
    "retain99",
    "holdout01",
    "holdout05",
    "holdout10",
    "forget01_perturbed",
    "forget05_perturbed",
    "forget10_perturbed",
    "retain_perturbed",
    "real_authors",
    "real_authors_perturbed",
    "world_facts",
    "world_facts_perturbed",
)
MUSE_SPLITS = {
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
    "raw": ("forget", "retain1", "retain2", "holdout"),
}


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.json`` (a list, or ``{"data": [...]}``), ``.jsonl`` or ``.parquet`` file as dicts."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such data file: {p}")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        pq = require("pyarrow.parquet", "llm", purpose="reading parquet files")
        return [dict(r) for r in pq.read_table(p).to_pylist()]
    if suffix not in (".json", ".jsonl"):
        raise InvalidInputError(f"unsupported data file {p.name}; expected .json, .jsonl or .parquet")
    obj: Any = read_json_or_lines(p)
    if isinstance(obj, Mapping):
        obj = obj["data"] if isinstance(obj.get("data"), list) else [obj]
    if not isinstance(obj, list) or not all(isinstance(r, Mapping) for r in obj):
        raise InvalidInputError(f"{p} must hold a list of objects (records), got {type(obj).__name__}")
    return [dict(r) for r in obj]


def _find_split_file(path: Path, split: str) -> Path:
    if path.is_file():
        return path
    for ext in (".json", ".jsonl", ".parquet"):
        candidate = path / f"{split}{ext}"
        if candidate.is_file():
            return candidate
    raise InvalidInputError(f"no {split}.json/.jsonl/.parquet in {path}")


def _from_hub(repo: str, config: str, split: str) -> list[dict[str, Any]]:
    datasets = require("datasets", "llm", purpose=f"downloading {repo} (pass path= to read local files instead)")
    return [dict(r) for r in datasets.load_dataset(repo, config, split=split)]


def _need(record: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise InvalidInputError(f"{where}: records need the fields {list(keys)}, missing {missing} in {sorted(record)}")


def load_tofu(split: str, *, path: str | Path | None = None) -> list[dict[str, Any]]:
    """A TOFU split (Maini et al., 2024) as records with ``prompt``/``answer`` plus the original fields.

    ``split`` is one of :data:`TOFU_SPLITS`; ``*_perturbed`` splits carry ``paraphrased_answer`` (str) and
    ``perturbed_answer`` (list of str) for the truth ratio. ``path`` is a ``{split}.json|jsonl|parquet``
    file or a folder holding one; without it the split is downloaded from ``locuslab/TOFU``.
    """
    if split not in TOFU_SPLITS:
        raise InvalidInputError(f"unknown TOFU split {split!r}; expected one of {TOFU_SPLITS}")
    rows = _from_hub(TOFU_HUB, split, "train") if path is None else read_records(_find_split_file(Path(path), split))
    out = []
    for r in rows:
        _need(r, ("question", "answer"), f"TOFU {split}")
        rec = dict(r)
        rec["prompt"], rec["answer"] = str(r["question"]), str(r["answer"])
        if "perturbed_answer" in rec and isinstance(rec["perturbed_answer"], str):
            rec["perturbed_answer"] = [rec["perturbed_answer"]]
        out.append(rec)
    return out


def load_muse(
    kind: str, split: str, *, path: str | Path | None = None, corpus: str = "News"
) -> list[dict[str, Any]]:
    """MUSE (Shi et al., 2024) files: ``verbmem`` ({prompt, gt}: continue a forget passage),
    ``knowmem`` ({question, answer}), ``privleak``/``raw`` ({text} passages: forget / retain / holdout).

    ``path`` is a file or a folder holding ``{split}.json|jsonl|parquet`` (or ``{split}.txt``, one passage per
    paragraph, for the raw corpora); without it the ``muse-bench/MUSE-{corpus}`` hub dataset is used.
    """
    if kind not in MUSE_SPLITS:
        raise InvalidInputError(f"unknown MUSE kind {kind!r}; expected one of {sorted(MUSE_SPLITS)}")
    if split not in MUSE_SPLITS[kind]:
        raise InvalidInputError(f"MUSE {kind} has the splits {MUSE_SPLITS[kind]}, got {split!r}")
    if path is None:
        rows = _from_hub(f"muse-bench/MUSE-{corpus}", "raw" if kind == "privleak" else kind, split)
    else:
        p = Path(path)
        txt = p / f"{split}.txt" if p.is_dir() else p
        if txt.suffix == ".txt" and txt.is_file():
            rows = [{"text": t} for t in _split_text(txt.read_text(encoding="utf-8"), "paragraph")]
        else:
            rows = read_records(_find_split_file(p, split))
    out = []
    for r in rows:
        rec = dict(r)
        if kind == "verbmem":
            _need(r, ("prompt", "gt"), f"MUSE verbmem {split}")
            rec["prompt"], rec["answer"] = str(r["prompt"]), str(r["gt"])
        elif kind == "knowmem":
            _need(r, ("question", "answer"), f"MUSE knowmem {split}")
            rec["prompt"], rec["answer"] = str(r["question"]), str(r["answer"])
        else:
            _need(r, ("text",), f"MUSE {kind} {split}")
            rec["prompt"], rec["answer"] = "", str(r["text"])
        out.append(rec)
    return out


def format_multiple_choice(record: Mapping[str, Any], *, letters: str = "ABCDEFGH") -> tuple[str, list[str]]:
    """The WMDP / MMLU zero-shot prompt (lm-eval-harness layout) and the continuations ``" A"``, ``" B"``, ...

    ``Question\\nA. choice\\nB. choice\\n...\\nAnswer:``; the model's answer is the letter it scores highest.
    """
    _need(record, ("question", "choices", "answer"), "multiple choice")
    choices = list(record["choices"])
    if not 2 <= len(choices) <= len(letters):
        raise InvalidInputError(f"a multiple-choice record needs 2..{len(letters)} choices, got {len(choices)}")
    lines = [str(record["question"]).strip()] + [f"{letters[i]}. {str(c).strip()}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:", [f" {letters[i]}" for i in range(len(choices))]


def load_multiple_choice(path: str | Path) -> list[dict[str, Any]]:
    """WMDP-style records ``{question, choices: [str], answer: int}`` (``cais/wmdp`` schema) from a local file."""
    out = []
    for r in read_records(path):
        _need(r, ("question", "choices", "answer"), f"multiple choice {path}")
        answer = r["answer"]
        if isinstance(answer, str) and len(answer) == 1 and answer.isalpha():
            answer = ord(answer.upper()) - ord("A")
        answer = int(answer)
        if not 0 <= answer < len(r["choices"]):
            raise InvalidInputError(f"answer index {answer} is outside the {len(r['choices'])} choices")
        out.append({**r, "answer": answer})
    return out


def _split_text(text: str, split_by: str) -> list[str]:
    if split_by == "line":
        parts = text.splitlines()
    elif split_by == "paragraph":
        parts = re.split(r"\n\s*\n", text)
    elif split_by == "fortune":
        parts = re.split(r"^%\s*$", text, flags=re.MULTILINE)
    else:
        raise InvalidInputError(f"split_by must be 'line', 'paragraph' or 'fortune', got {split_by!r}")
    return [p.strip() for p in parts if p.strip()]


def load_text(path: str | Path, *, split_by: str = "paragraph") -> list[dict[str, Any]]:
    """A plain-text corpus (forget or retain) as records with an empty prompt: the loss covers every token.

    ``split_by``: ``"line"``, ``"paragraph"`` (blank-line separated) or ``"fortune"`` (``%`` lines, as in
    Debian's fortunes files).
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such text file: {p}")
    return [{"prompt": "", "answer": t, "text": t} for t in _split_text(p.read_text(encoding="utf-8"), split_by)]


def _as_pair(record: Any) -> tuple[str, str]:
    if isinstance(record, str):
        return "", record
    if isinstance(record, Mapping):
        if "answer" in record:
            return str(record.get("prompt", record.get("question", ""))), str(record["answer"])
        if "text" in record:
            return "", str(record["text"])
        raise InvalidInputError(f"a text record needs 'answer' (with 'prompt') or 'text', got keys {sorted(record)}")
    if isinstance(record, (tuple, list)) and len(record) == 2 and all(isinstance(s, str) for s in record):
        return record[0], record[1]
    raise ErasusTypeError(f"a text sample is a str, a (prompt, answer) pair or a dict, got {type(record).__name__}")


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise InvalidInputError("the tokenizer has neither a pad_token_id nor an eos_token_id to pad with")
    return int(pad)


class LMDataset(Dataset):
    """Tokenized prompt/answer records, each item ``{"input_ids", "attention_mask", "labels"}`` of one length.

    ``records`` are strings (plain text), ``(prompt, answer)`` pairs or dicts with ``prompt``/``answer`` (or
    ``text``). ``answer_key`` picks another answer field (e.g. ``"paraphrased_answer"``); a list-valued field
    such as TOFU's ``perturbed_answer`` needs ``answer_index``. ``add_eos=False`` scores a continuation
    without the end-of-sequence token (multiple-choice letters).
    """

    def __init__(
        self,
        records: Sequence[Any],
        tokenizer: Any,
        *,
        max_length: int = 512,
        chat_template: bool | None = None,
        system_prompt: str | None = None,
        answer_key: str = "answer",
        answer_index: int | None = None,
        add_eos: bool = True,
    ) -> None:
        if len(records) == 0:
            raise InvalidInputError("LMDataset needs at least one record")
        self.records = list(records)
        self.tokenizer = tokenizer
        encoded = []
        for r in self.records:
            if answer_key != "answer":
                if not isinstance(r, Mapping) or answer_key not in r:
                    raise InvalidInputError(f"answer_key={answer_key!r} is missing from a record")
                value = r[answer_key]
                if isinstance(value, (list, tuple)):
                    if answer_index is None:
                        raise InvalidInputError(f"{answer_key!r} holds a list; pass answer_index=")
                    value = value[answer_index]
                r = {"prompt": _as_pair(r)[0], "answer": str(value)}
            prompt, answer = _as_pair(r)
            encoded.append(
                encode_prompt_answer(
                    tokenizer,
                    prompt,
                    answer,
                    max_length=max_length,
                    chat_template=chat_template,
                    system_prompt=system_prompt,
                    add_eos=add_eos,
                )
            )
        self.batch = pad_encoded(encoded, pad_token_id=_pad_id(tokenizer))

    def __len__(self) -> int:
        return int(self.batch["input_ids"].shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.batch.items()}


class LMCollator:
    """``collate_fn`` producing :class:`~erasus.tasks.CausalLMTask` batches from raw records or tokenized items.

    Items may be records (see :class:`LMDataset`), already tokenized dicts (trailing padding is trimmed to
    the batch's longest sample), or ``(item, index)`` pairs from :class:`erasus.data.IndexedDataset`, in
    which case it returns ``(batch, indices)``.
    """

    def __init__(
        self, tokenizer: Any, *, max_length: int = 512, chat_template: bool | None = None, system_prompt: str | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.chat_template = chat_template
        self.system_prompt = system_prompt

    def __call__(self, items: Sequence[Any]) -> Any:
        if not items:
            raise InvalidInputError("cannot collate an empty list of samples")
        first = items[0]
        if isinstance(first, tuple) and len(first) == 2 and isinstance(first[1], int):
            batch = self([it[0] for it in items])
            return batch, torch.as_tensor([int(it[1]) for it in items], dtype=torch.long)
        if isinstance(first, Mapping) and "input_ids" in first:
            encoded = []
            for it in items:
                mask = torch.as_tensor(it.get("attention_mask", torch.ones(len(it["input_ids"]))))
                n = int(mask.nonzero().max()) + 1 if bool(mask.any()) else 0
                ids = torch.as_tensor(it["input_ids"])[:n].tolist()
                labels = torch.as_tensor(it.get("labels", it["input_ids"]))[:n].tolist()
                encoded.append({"input_ids": ids, "attention_mask": mask[:n].tolist(), "labels": labels})
            return pad_encoded(encoded, pad_token_id=_pad_id(self.tokenizer))
        encoded = [
            encode_prompt_answer(
                self.tokenizer,
                *_as_pair(it),
                max_length=self.max_length,
                chat_template=self.chat_template,
                system_prompt=self.system_prompt,
            )
            for it in items
        ]
        return pad_encoded(encoded, pad_token_id=_pad_id(self.tokenizer))

