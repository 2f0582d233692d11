"""Golden columns of multiple-choice questions: `choices` and `answer`, validated row by row,
hashed with the sample, stored and read back for scoring."""

import csv
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evals.models import GoldenSample
from evals.scoring.golden_io import GoldenFileError, dataset_sha256, read_golden_file, sample_hashes
from evals.services.datasets import dataset_import
from evals.services.engine import dataset_samples

QUESTIONS = [
    {"id": "q1", "prompt": "The sky is", "choices": ["blue", "green"], "answer": [0]},
    {"id": "q2", "prompt": "Two and two make", "choices": ["four", "IV", "five"], "answer": [0, 1]},
]


def as_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def as_csv(rows: list[dict]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=["id", "prompt", "choices", "answer"])
    writer.writeheader()
    writer.writerows(
        {**row, "choices": json.dumps(row["choices"]), "answer": json.dumps(row["answer"])} for row in rows
    )
    return buffer.getvalue().encode()


def as_parquet(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


@pytest.mark.parametrize(("filename", "encode"), [("q.jsonl", as_jsonl), ("q.csv", as_csv), ("q.parquet", as_parquet)])
def test_it_reads_choices_and_answers_from_each_format(filename, encode):
    samples = read_golden_file(encode(QUESTIONS), filename, prompts=True)
    assert [(s["choices"], s["answer"]) for s in samples] == [(q["choices"], q["answer"]) for q in QUESTIONS]
    assert dataset_sha256(samples) == dataset_sha256(read_golden_file(as_jsonl(QUESTIONS), "q.jsonl", prompts=True))


def test_it_takes_a_single_gold_index_as_a_list_of_one():
    [sample] = read_golden_file(b'{"prompt": "p", "choices": ["a", "b"], "answer": 1}\n', "q.jsonl", prompts=True)
    assert sample["answer"] == [1]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"choices": ["a", "b"]}, "choices needs answer"),
        ({"answer": 0}, "answer needs choices"),
        ({"choices": ["a"], "answer": 0}, "at least 2"),
        ({"choices": "not json", "answer": 0}, "choices is not valid JSON"),
        ({"choices": ["a", " "], "answer": 0}, "choice 2 must be a non-empty string"),
        ({"choices": ["a", 3], "answer": 0}, "choice 2 must be a non-empty string"),
        ({"choices": ["a", "b"], "answer": 2}, "answer must be the index of the gold choice (0 to 1)"),
        ({"choices": ["a", "b"], "answer": True}, "answer must be the index"),
        ({"choices": ["a", "b"], "answer": []}, "answer must be the index"),
    ],
)
def test_it_refuses_a_bad_question_naming_its_row(row, message):
    content = as_jsonl([{"prompt": "fine", "choices": ["x", "y"], "answer": 0}, {"prompt": "context", **row}])
    with pytest.raises(GoldenFileError) as refused:
        read_golden_file(content, "q.jsonl", prompts=True)
    assert refused.value.row == 2
    assert message in str(refused.value)


def test_it_refuses_choices_without_a_context():
    with pytest.raises(GoldenFileError, match="row 1: choices need a prompt or messages"):
        read_golden_file(b'{"text": "t", "choices": ["a", "b"], "answer": 0}\n', "q.jsonl", prompts=True)


def test_it_hashes_choices_and_answer_and_keeps_the_hash_of_samples_without_them():
    plain = {"id": "p", "text": None, "reference": None, "category": None, "prompt": "The sky is"}
    asked = [
        plain | {"choices": ["blue", "green"], "answer": [0]},
        plain | {"choices": ["blue", "green"], "answer": [1]},
    ]
    hashes = sample_hashes([plain, *asked])
    before = {"messages": None, "prompt": "The sky is", "reference": None, "text": None}
    assert hashes[0] == hashlib.sha256(json.dumps(before, separators=(",", ":")).encode()).hexdigest()
    assert len(set(hashes)) == 3


@pytest.mark.django_db
def test_it_stores_the_question_and_gives_it_to_the_scorers():
    dataset = dataset_import(name="quiz", filename="quiz.jsonl", source=io.BytesIO(as_jsonl(QUESTIONS)))
    stored = GoldenSample.objects.get(dataset=dataset, sample_id="q2")
    assert (stored.choices, stored.answer) == (["four", "IV", "five"], [0, 1])
    assert [(s["choices"], s["answer"]) for s in dataset_samples(dataset)] == [
        (q["choices"], q["answer"]) for q in QUESTIONS
    ]
