"""Parquet row bombs: the row count in a Parquet file's metadata is checked before any row is
materialised, on every upload path (golden sets and traffic logs), and files within the limit are
read a batch at a time with the same result."""

import io
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftboard.roles import REVIEWER
from evals.models import GoldenDataset
from evals.scoring.golden_io import GoldenFileError, read_golden_file
from tests.factories import FamilyFactory
from tests.hardening.conftest import api_client_as

MIB = 1024 * 1024


def parquet_bytes(rows: int, row_group_size: int | None = None) -> bytes:
    table = pa.table({"text": pa.array(["the same short text"] * rows), "category": pa.array(["a", "b"] * (rows // 2))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size, use_dictionary=True, compression="zstd")
    return buffer.getvalue()


def test_it_refuses_a_parquet_row_bomb_from_its_metadata_without_materialising_rows():
    bomb = parquet_bytes(300_000)
    assert len(bomb) < 64 * 1024  # a small file: the rows compress to almost nothing

    tracemalloc.start()
    try:
        with pytest.raises(GoldenFileError) as refused:
            read_golden_file(bomb, "bomb.parquet", max_rows=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 2 * MIB  # 300,000 row dicts would take well over 50 MiB
    assert refused.value.row == 1001
    assert "at most 1000" in str(refused.value) and "300000" in str(refused.value)


def test_it_reads_a_file_of_many_row_groups_in_batches_with_the_same_samples():
    content = parquet_bytes(5000, row_group_size=700)
    samples = read_golden_file(content, "golden.parquet", max_rows=5000)
    expected = pq.read_table(pa.BufferReader(content)).to_pylist()
    assert [(s["text"], s["category"]) for s in samples] == [(r["text"], r["category"]) for r in expected]
    assert [s["id"] for s in samples[:3]] == ["0", "1", "2"]


def test_the_api_answers_400_naming_the_row_past_the_limit(api_client, settings):
    settings.DRIFTBOARD_MAX_DATASET_ROWS = 100
    upload = io.BytesIO(parquet_bytes(200_000))
    upload.name = "bomb.parquet"
    response = api_client.post("/api/v1/datasets/", {"name": "bomb", "file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["row"] == 101
    assert not GoldenDataset.objects.exists()


def test_a_traffic_upload_is_refused_from_the_parquet_metadata_too(db, settings):
    settings.DRIFTBOARD_MAX_TRAFFIC_ROWS = 100
    family = FamilyFactory(slug="support")
    upload = io.BytesIO(parquet_bytes(200_000))
    upload.name = "bomb.parquet"

    response = api_client_as(REVIEWER).post(
        f"/api/v1/families/{family.slug}/traffic/", {"file": upload}, format="multipart"
    )

    assert response.status_code == 400
    assert response.json()["row"] == 101
    assert "at most 100 (the file holds 200000)" in response.json()["detail"]
    assert not GoldenDataset.objects.exists()
