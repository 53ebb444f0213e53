"""LLM data: TOFU / MUSE / WMDP / text files with the hub schemas, read offline."""

from __future__ import annotations

import json

import pytest
import torch
from erasus.data import IndexedDataset, as_loader, subset
from erasus.data.llm import (
    LMDataset,
    format_multiple_choice,
    load_multiple_choice,
    load_muse,
    load_text,
    load_tofu,
    read_records,
)
from erasus.errors import InvalidInputError
from erasus.tasks.causal_lm import IGNORE_INDEX

TOFU_ROWS = [
    {"question": "Who wrote the red book?", "answer": "Alba Quist wrote the red book.",
     "paraphrased_answer": "The red book is by Alba Quist.",
     "perturbed_answer": ["Cato Wren wrote the red book.", "Alba Quist wrote the blue book."]},
    {"question": "Where was Alba Quist born?", "answer": "Alba Quist was born in Norvik.",
     "paraphrased_answer": "Norvik.", "perturbed_answer": ["Ostby."]},
]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_tofu_split_from_local_files(tmp_path, fmt):
    path = tmp_path / f"forget01_perturbed.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(TOFU_ROWS))
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in TOFU_ROWS))
    else:
        pq = pytest.importorskip("pyarrow.parquet")
        import pyarrow as pa

        pq.write_table(pa.Table.from_pylist(TOFU_ROWS), path)
    rows = load_tofu("forget01_perturbed", path=tmp_path)
    assert [r["prompt"] for r in rows] == [r["question"] for r in TOFU_ROWS]
    assert [r["answer"] for r in rows] == [r["answer"] for r in TOFU_ROWS]
    assert rows[0]["perturbed_answer"] == TOFU_ROWS[0]["perturbed_answer"]


def test_tofu_rejects_unknown_split_and_missing_fields(tmp_path):
    with pytest.raises(InvalidInputError, match="forget05"):
        load_tofu("forget02", path=tmp_path)
    (tmp_path / "forget10.json").write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(InvalidInputError, match="answer"):
        load_tofu("forget10", path=tmp_path)
    with pytest.raises(InvalidInputError, match="no retain90"):
        load_tofu("retain90", path=tmp_path)


def test_muse_kinds(tmp_path):
    (tmp_path / "forget.json").write_text(json.dumps([{"prompt": "Once upon", "gt": "a time"}]))
    (tmp_path / "forget_qa.json").write_text(json.dumps([{"question": "Who?", "answer": "Harry"}]))
    (tmp_path / "holdout.txt").write_text("First passage.\n\nSecond passage\nspans two lines.\n")
    verb = load_muse("verbmem", "forget", path=tmp_path)[0]
    assert (verb["prompt"], verb["answer"]) == ("Once upon", "a time")
    assert load_muse("knowmem", "forget_qa", path=tmp_path)[0]["answer"] == "Harry"
    held = load_muse("privleak", "holdout", path=tmp_path)
    assert [r["answer"] for r in held] == ["First passage.", "Second passage\nspans two lines."]
    assert all(r["prompt"] == "" for r in held)
    with pytest.raises(InvalidInputError, match="splits"):
        load_muse("verbmem", "retain", path=tmp_path)


def test_multiple_choice_format_and_letters(tmp_path):
    rows = [{"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1},
            {"question": "Sky?", "choices": ["blue", "red"], "answer": "A"}]
    path = tmp_path / "wmdp.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    recs = load_multiple_choice(path)
    assert [r["answer"] for r in recs] == [1, 0]
    prompt, conts = format_multiple_choice(recs[0])
    assert prompt == "2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    assert conts == [" A", " B", " C", " D"]
    path.write_text(json.dumps([{"question": "q", "choices": ["a", "b"], "answer": 2}]))
    with pytest.raises(InvalidInputError, match="outside"):
        load_multiple_choice(path)


def test_text_corpora_split_modes(tmp_path):
    path = tmp_path / "fortunes"
    path.write_text("A fool and his money.\n%\nLook before\nyou leap.\n%\n")
    assert [r["answer"] for r in load_text(path, split_by="fortune")] == ["A fool and his money.", "Look before\nyou leap."]
    assert len(load_text(path, split_by="line")) == 5
    with pytest.raises(InvalidInputError, match="split_by"):
        load_text(path, split_by="words")


def test_read_records_errors(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInputError, match="JSON"):
        read_records(bad)
    csv = tmp_path / "x.csv"
    csv.write_text("a")
    with pytest.raises(InvalidInputError, match="unsupported"):
        read_records(csv)


def test_lm_dataset_works_with_indexed_loader_and_subset(tokenizer):
    records = [{"prompt": r["question"], "answer": r["answer"], **r} for r in TOFU_ROWS]
    ds = LMDataset(records, tokenizer, max_length=32)
    batch, idx = next(iter(as_loader(IndexedDataset(ds), batch_size=2)))
    assert idx.tolist() == [0, 1]
    assert torch.equal(batch["input_ids"], ds.batch["input_ids"])
    sub = subset(ds, [1])
    assert torch.equal(sub[0]["labels"], ds.batch["labels"][1])
    alt = LMDataset(records, tokenizer, answer_key="perturbed_answer", answer_index=0)
    ids = alt.batch["input_ids"][0][alt.batch["labels"][0] != IGNORE_INDEX]
    assert tokenizer.decode(ids, skip_special_tokens=True) == tokenizer.decode(
        tokenizer(TOFU_ROWS[0]["perturbed_answer"][0], add_special_tokens=False)["input_ids"])
    with pytest.raises(InvalidInputError, match="answer_index"):
        LMDataset(records, tokenizer, answer_key="perturbed_answer")
