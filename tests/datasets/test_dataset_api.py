import io

import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from evals.models import GoldenDataset, GoldenSample

JSONL = b'{"id": "a", "text": "Hello there.", "category": "greeting"}\n{"id": "b", "text": "Goodbye."}\n'


def post(client, name: str, filename: str, content: bytes):
    return client.post(
        "/api/v1/datasets/", {"name": name, "file": SimpleUploadedFile(filename, content)}, format="multipart"
    )


def test_it_freezes_a_dataset_and_versions_new_uploads(api_client):
    first = post(api_client, "golden", "golden.jsonl", JSONL)
    same = post(api_client, "golden", "golden.jsonl", JSONL)
    grown = post(api_client, "golden", "golden.jsonl", JSONL + b'{"id": "c", "text": "New one."}\n')

    assert first.status_code == 201, first.json()
    assert (first.json()["name"], first.json()["version"], first.json()["samples"]) == ("golden", 1, 2)
    assert same.json()["version"] == 1
    assert (grown.json()["version"], grown.json()["samples"]) == (2, 3)
    samples = GoldenSample.objects.filter(dataset__version=1).order_by("position")
    assert [(s.sample_id, s.category) for s in samples] == [("a", "greeting"), ("b", "")]
    assert len({s.sha256 for s in samples}) == 2


def test_it_reads_parquet_and_csv(api_client):
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": ["one", "two"], "reference": ["uno", "dos"]}), buffer)

    parquet = post(api_client, "pairs", "pairs.parquet", buffer.getvalue())
    csv = post(api_client, "csv", "golden.csv", b"id,text\n1,first\n2,second\n")

    assert parquet.status_code == 201 and parquet.json()["samples"] == 2
    assert csv.status_code == 201 and csv.json()["samples"] == 2
    assert GoldenSample.objects.get(dataset__name="pairs", position=1).reference == "dos"


def test_it_refuses_bad_files_with_the_row_and_stores_nothing(api_client):
    cases = {
        "no-text.jsonl": b'{"id": "a", "body": "x"}\n',
        "empty-prompt.jsonl": b'{"id": "a", "prompt": "  "}\n',
        "empty-text.jsonl": b'{"id": "a", "text": "ok"}\n{"id": "b", "text": ""}\n',
        "dupes.jsonl": b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
        "latin1.csv": b"text\ncaf\xe9\n",
        "empty.jsonl": b"",
        "golden.xlsx": b"PK\x03\x04",
    }
    for filename, content in cases.items():
        response = post(api_client, "bad", filename, content)
        assert response.status_code == 400, filename
        body = response.json()
        assert body.get("detail") or body.get("file"), filename
    assert post(api_client, "bad", "empty-text.jsonl", cases["empty-text.jsonl"]).json()["row"] == 2
    assert GoldenDataset.objects.count() == 0


def test_anonymous_users_cannot_upload(anonymous_client, db):
    assert post(anonymous_client, "golden", "g.jsonl", JSONL).status_code == 401


def test_the_import_golden_command(db, tmp_path, capsys):
    path = tmp_path / "golden.jsonl"
    path.write_bytes(JSONL)

    call_command("import_golden", "cmd-golden", str(path))

    assert GoldenDataset.objects.get(name="cmd-golden").sample_count == 2
    assert "cmd-golden v1: 2 samples" in capsys.readouterr().out
