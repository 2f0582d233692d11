"""Golden samples with a `prompt` or chat `messages`: reading every format, row-numbered errors, hashes."""

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evals.scoring.golden_io import GoldenFileError, dataset_sha256, read_golden_file, sample_hashes
from evals.scoring.hashing import prompt_sha256, sample_sha256

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What does len() return?"}]
ROWS = [
    {"id": "p", "text": None, "reference": "the number of items", "category": "qa", "prompt": "len() returns"},
    {"id": "m", "text": None, "reference": "its length", "category": "qa", "messages": CHAT},
    {"id": "both", "text": "A likelihood text.", "reference": "42", "category": None, "prompt": "Six times seven is"},
    {"id": "t", "text": "Only text, as before.", "reference": None, "category": None},
]


def as_jsonl(rows: list[dict]) -> bytes:
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()


COLUMNS = ["id", "text", "reference", "category", "prompt", "messages"]


def cells(row: dict) -> dict:
    """Every column, with messages as a JSON string (how CSV, and some Parquet writers, hold them)."""
    return {key: json.dumps(row[key]) if isinstance(row.get(key), list) else row.get(key) for key in COLUMNS}


def as_csv(rows: list[dict]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in cells(row).items()} for row in rows)
    return buffer.getvalue().encode()


def as_parquet(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{key: row.get(key) for key in COLUMNS} for row in rows]), sink)
    return sink.getvalue()


def as_parquet_json_cells(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([cells(row) for row in rows]), sink)
    return sink.getvalue()


FORMATS = [("g.jsonl", as_jsonl), ("g.csv", as_csv), ("g.parquet", as_parquet), ("g.parquet", as_parquet_json_cells)]


def read(content: bytes, filename: str) -> list[dict]:
    return read_golden_file(content, filename, prompts=True)


@pytest.mark.parametrize(("filename", "encode"), FORMATS)
def test_it_reads_prompts_and_messages_from_each_format(filename, encode):
    samples = read(encode(ROWS), filename)
    assert samples == ROWS
    assert dataset_sha256(samples) == dataset_sha256(ROWS)


def test_it_keeps_the_hashes_of_samples_without_prompts():
    """Hashes as the scorers' cache has stored them since the first release (pinned values)."""
    text_only = [
        {"id": "t", "text": "Only text, as before.", "reference": "ref", "category": None},
        {"id": "u", "text": "Grüße", "reference": None, "category": "de"},
    ]
    assert sample_hashes(text_only) == [
        "d0e378b725d7fd70dd1372e0387d9653e3ae5b9de9d128694e304a11ae2bee6d",
        "9871da1221c97c2d4cbc7704e87ee0b2ec5f49cbe39d7e692597037552e4140e",
    ]
    assert read_golden_file(as_jsonl(text_only), "g.jsonl", prompts=True) == text_only
    assert dataset_sha256(read_golden_file(as_jsonl(text_only), "g.jsonl", prompts=True)) == dataset_sha256(
        read_golden_file(as_jsonl(text_only), "g.jsonl")
    )


def test_it_hashes_prompts_and_messages_into_the_sample():
    hashes = sample_hashes(ROWS)
    assert len(set(hashes)) == len(ROWS)
    reworded = [dict(ROWS[0], prompt="len() gives"), dict(ROWS[1], messages=[CHAT[1]]), *ROWS[2:]]
    assert [a != b for a, b in zip(sample_hashes(reworded), hashes, strict=True)] == [True, True, False, False]
    assert prompt_sha256("len() returns") != prompt_sha256([{"role": "user", "content": "len() returns"}])
    assert sample_sha256(None, "r", prompt="p") != sample_sha256("p", "r")


def test_it_ignores_prompt_columns_unless_asked():
    assert read_golden_file(as_jsonl(ROWS[2:]), "g.jsonl") == [
        {key: value for key, value in row.items() if key != "prompt"} for row in ROWS[2:]
    ]
    with pytest.raises(GoldenFileError, match="no 'text' column"):
        read_golden_file(as_jsonl([{"id": "p", "prompt": "len() returns"}]), "g.jsonl")


def error_of(rows: list[dict], encode=as_jsonl, filename="g.jsonl", **limits) -> GoldenFileError:
    with pytest.raises(GoldenFileError) as caught:
        read_golden_file(encode(rows), filename, prompts=True, **limits)
    return caught.value


GOOD = {"id": "ok", "prompt": "fine"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "   "}, "empty prompt"),
        ({"prompt": 7}, "prompt must be a string, got 7"),
        ({"prompt": "a", "messages": CHAT}, "either a prompt or messages, not both"),
        ({"messages": "[{'role': 'user'"}, "messages is not valid JSON"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": {"role": "user", "content": "x"}}, "messages must be a non-empty list"),
        ({"messages": ["hello"]}, 'message 1 must be an object with exactly "role" and "content"'),
        ({"messages": [{"role": "user"}]}, 'message 1 must be an object with exactly "role" and "content"'),
        ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "exactly"),
        ({"messages": [CHAT[0], {"role": "robot", "content": "x"}]}, "message 2 has role 'robot'"),
        ({"messages": [{"role": "user", "content": 3}]}, "message 1 content must be a string"),
        ({"messages": [{"role": "user", "content": "  "}]}, "every content is blank"),
        ({"text": "  ", "prompt": "a"}, "empty text"),
        ({"reference": "only a reference"}, "empty text"),
    ],
)
def test_it_names_the_row_of_a_bad_prompt(row, message):
    error = error_of([GOOD, {"id": "bad", **row}])
    assert error.row == 2
    assert message in error.message


@pytest.mark.parametrize(("filename", "encode"), [("g.csv", as_csv), ("g.parquet", as_parquet_json_cells)])
def test_it_names_the_row_of_bad_messages_in_text_cells(filename, encode):
    rows = [ROWS[0], dict(ROWS[1], messages='[{"role": "user"}]')]
    error = error_of(rows, encode, filename)
    assert (error.row, error.message) == (2, 'message 1 must be an object with exactly "role" and "content"')


def test_it_refuses_prompts_and_messages_over_the_size_limit():
    assert "prompt has 11 characters, more than the 10 allowed" in str(
        error_of([GOOD, {"prompt": "x" * 11}], max_chars=10)
    )
    long_chat = [{"role": "system", "content": "x" * 6}, {"role": "user", "content": "y" * 5}]
    error = error_of([GOOD, {"messages": long_chat}], max_chars=10)
    assert (error.row, error.message) == (2, "messages has 11 characters, more than the 10 allowed")


def test_it_names_the_row_of_a_prompt_with_invalid_utf8():
    content = as_jsonl([GOOD]) + b'\n{"prompt": "caf\xe9"}'
    with pytest.raises(GoldenFileError) as caught:
        read_golden_file(content, "g.jsonl", prompts=True)
    assert caught.value.row == 2 and "prompt is not valid UTF-8" in caught.value.message
    chat = b'\n{"messages": [{"role": "user", "content": "caf\xe9"}]}'
    with pytest.raises(GoldenFileError, match="message 1 content is not valid UTF-8"):
        read_golden_file(as_jsonl([GOOD]) + chat, "g.jsonl", prompts=True)
