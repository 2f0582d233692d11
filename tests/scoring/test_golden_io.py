import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evals.scoring.golden_io import GoldenFileError, dataset_sha256, read_golden_file, sample_hashes

ROWS = [
    {"id": "a", "text": "The first passage.", "reference": "A first passage.", "category": "prose"},
    {"id": "b", "text": "Zweiter Absatz — mit Umlauten: äöü.", "reference": None, "category": "de"},
    {"id": "c", "text": "third\nwith a newline", "reference": None, "category": None},
]


def as_jsonl(rows: list[dict]) -> bytes:
    return "\n".join(json.dumps(row, ensure_ascii=False) for row in rows).encode()


def as_csv(rows: list[dict]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return buffer.getvalue().encode()


def as_parquet(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


@pytest.mark.parametrize(("filename", "encode"), [("g.jsonl", as_jsonl), ("g.csv", as_csv), ("g.parquet", as_parquet)])
def test_it_reads_each_format_to_the_same_samples(filename, encode):
    samples = read_golden_file(encode(ROWS), filename)
    assert samples == ROWS
    assert dataset_sha256(samples) == dataset_sha256(ROWS)


def test_it_reads_a_path_and_detects_the_format_from_content(tmp_path):
    path = tmp_path / "golden.parquet"
    path.write_bytes(as_parquet(ROWS))
    assert read_golden_file(path) == ROWS
    assert read_golden_file(as_parquet(ROWS)) == ROWS
    assert read_golden_file(as_jsonl(ROWS)) == ROWS
    assert read_golden_file(as_csv(ROWS)) == ROWS


def test_it_numbers_samples_without_ids_by_row_index():
    samples = read_golden_file(as_jsonl([{"text": "one"}, {"text": "two"}]), "g.jsonl")
    assert [(s["id"], s["reference"], s["category"]) for s in samples] == [("0", None, None), ("1", None, None)]


def test_it_hashes_content_not_format():
    changed = [dict(ROWS[0], text="The first passage!"), *ROWS[1:]]
    assert dataset_sha256(changed) != dataset_sha256(ROWS)
    relabelled = [dict(ROWS[0], id="z", category="other"), *ROWS[1:]]
    assert sample_hashes(relabelled) == sample_hashes(ROWS)
    assert dataset_sha256(relabelled) != dataset_sha256(ROWS)


def error_of(content: bytes, filename: str | None) -> GoldenFileError:
    with pytest.raises(GoldenFileError) as caught:
        read_golden_file(content, filename)
    return caught.value


@pytest.mark.parametrize(("filename", "encode"), [("g.jsonl", as_jsonl), ("g.csv", as_csv), ("g.parquet", as_parquet)])
def test_it_requires_a_text_column(filename, encode):
    error = error_of(encode([{"id": "a", "body": "no text column"}]), filename)
    assert "no 'text' column" in str(error)


@pytest.mark.parametrize(("filename", "encode"), [("g.jsonl", as_jsonl), ("g.csv", as_csv), ("g.parquet", as_parquet)])
def test_it_names_the_row_of_an_empty_text(filename, encode):
    rows = [dict(row, text="   ") if row["id"] == "b" else row for row in ROWS]
    error = error_of(encode(rows), filename)
    assert (error.row, error.message) == (2, "empty text")


@pytest.mark.parametrize(("filename", "encode"), [("g.jsonl", as_jsonl), ("g.csv", as_csv), ("g.parquet", as_parquet)])
def test_it_names_the_row_of_a_duplicate_id(filename, encode):
    error = error_of(encode([*ROWS, dict(ROWS[0], text="again")]), filename)
    assert error.row == 4
    assert "duplicate id 'a'" in str(error)


@pytest.mark.parametrize(("filename", "encode"), [("g.jsonl", as_jsonl), ("g.csv", as_csv)])
def test_it_names_the_row_with_invalid_utf8(filename, encode):
    content = encode(ROWS).replace(b"Zweiter", b"Zw\xffeiter")
    error = error_of(content, filename)
    assert error.row == 2
    assert "not valid UTF-8" in error.message


def test_it_names_the_row_of_a_broken_json_line():
    content = as_jsonl(ROWS[:2]) + b"\n{not json"
    assert error_of(content, "g.jsonl").row == 3


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (b"", "g.csv", "the file is empty"),
        (b"text\n", "g.csv", "the file has no samples"),
        (b"\n\n", "g.jsonl", "the file has no samples"),
    ],
)
def test_it_refuses_a_file_without_samples(content, filename, message):
    assert str(error_of(content, filename)) == message


@pytest.mark.parametrize(
    ("content", "filename"), [(b"text\nhello", "golden.xlsx"), (b"PK\x03\x04\0\0binary", None), (b"[1, 2]", "g.json")]
)
def test_it_refuses_unsupported_formats(content, filename):
    assert "unsupported" in str(error_of(content, filename))
