"""Input limits: oversized uploads answer 413 and leave nothing behind; oversized datasets name the row."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as safetensors_save

from evals.models import ExperimentRun, GoldenDataset
from registry.models import Artifact
from tests.factories import ExperimentFactory, FamilyFactory

KIB = 1024


def named(content: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(content)
    upload.name = name
    return upload


def safetensors_of_size(approx_bytes: int) -> bytes:
    return safetensors_save({"wte.weight": np.ones(approx_bytes // 4, dtype=np.float32)})


def staged_files(artifact_root: Path) -> set[Path]:
    return {path for path in (artifact_root / "tmp").rglob("*") if path.is_file()}


@pytest.fixture
def family(db):
    return FamilyFactory(slug="support-bot")


def submit(client, *files: tuple[str, io.BytesIO]):
    body = {"family": "support-bot", "commit": "abc1234", **dict(files)}
    return client.post("/api/v1/artifacts/", body, format="multipart")


def test_it_answers_413_past_the_upload_limit_and_removes_the_partial_file(
    api_client, family, settings, session_artifact_root
):
    settings.DRIFTBOARD_MAX_UPLOAD_BYTES = 100 * KIB  # the handler receives 64 KiB chunks: one is written first
    before = staged_files(session_artifact_root)
    response = submit(api_client, ("weights", named(safetensors_of_size(300 * KIB), "model.safetensors")))
    assert response.status_code == 413
    assert "DRIFTBOARD_MAX_UPLOAD_BYTES" in response.json()["detail"]
    assert staged_files(session_artifact_root) == before
    assert not Artifact.objects.exists()


def test_it_removes_the_files_already_received_when_a_later_one_is_too_large(
    api_client, family, settings, session_artifact_root
):
    settings.DRIFTBOARD_MAX_UPLOAD_BYTES = 100 * KIB
    before = staged_files(session_artifact_root)
    small = named(safetensors_of_size(8 * KIB), "model.safetensors")
    large = named(b"\0" * (200 * KIB), "extra.bin")
    response = submit(api_client, ("weights", small), ("extra", large))
    assert response.status_code == 413
    assert staged_files(session_artifact_root) == before


def test_it_accepts_an_upload_of_exactly_the_limit(api_client, family, settings):
    content = safetensors_of_size(32 * KIB)
    settings.DRIFTBOARD_MAX_UPLOAD_BYTES = len(content)
    response = submit(api_client, ("weights", named(content, "model.safetensors")))
    assert response.status_code == 202
    assert Artifact.objects.get().size_bytes == len(content)


def test_it_refuses_a_declared_length_past_the_limit_before_reading_the_body(
    api_client, family, settings, session_artifact_root
):
    settings.DRIFTBOARD_MAX_UPLOAD_BYTES = 16 * KIB
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * KIB
    before = staged_files(session_artifact_root)
    response = submit(api_client, ("weights", named(safetensors_of_size(64 * KIB), "model.safetensors")))
    assert response.status_code == 413
    assert response.json()["detail"].endswith("(DRIFTBOARD_MAX_UPLOAD_BYTES).")
    assert staged_files(session_artifact_root) == before


def test_it_refuses_a_json_body_past_data_upload_max_memory_size(api_client, settings):
    experiment = ExperimentFactory(slug="loop")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * KIB
    body = {"commit": "abc1234", "status": "keep", "objective_value": 0.9, "log": "x" * (8 * KIB)}
    response = api_client.post(f"/api/v1/experiments/{experiment.slug}/runs/", body, format="json")
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert not ExperimentRun.objects.exists()


def jsonl(texts: list[str]) -> io.BytesIO:
    return named("\n".join(json.dumps({"text": text}) for text in texts).encode(), "golden.jsonl")


def upload_dataset(client, content: io.BytesIO):
    return client.post("/api/v1/datasets/", {"name": "golden", "file": content}, format="multipart")


def test_it_names_the_first_row_past_the_dataset_row_limit(api_client, settings):
    settings.DRIFTBOARD_MAX_DATASET_ROWS = 3
    response = upload_dataset(api_client, jsonl([f"Sample {i}." for i in range(5)]))
    assert response.status_code == 400
    assert response.json()["row"] == 4
    assert "at most 3" in response.json()["detail"]
    assert not GoldenDataset.objects.exists()


def test_it_takes_a_dataset_of_exactly_the_row_limit(api_client, settings):
    settings.DRIFTBOARD_MAX_DATASET_ROWS = 3
    response = upload_dataset(api_client, jsonl([f"Sample {i}." for i in range(3)]))
    assert response.status_code == 201
    assert response.json()["samples"] == 3


@pytest.mark.parametrize("column", ["text", "reference"])
def test_it_names_the_row_whose_sample_is_too_long(api_client, settings, column):
    settings.DRIFTBOARD_MAX_SAMPLE_CHARS = 50
    rows = [{"text": "a" * 50, "reference": "b" * 50}, {"text": "fine", "reference": "fine"}]
    rows[1][column] = "é" * 51  # characters, not bytes, are counted
    content = named("\n".join(json.dumps(row) for row in rows).encode(), "golden.jsonl")
    response = upload_dataset(api_client, content)
    assert response.status_code == 400
    assert response.json()["row"] == 2
    assert f"{column} has 51 characters" in response.json()["detail"]
    assert not GoldenDataset.objects.exists()
