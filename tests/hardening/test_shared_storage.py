"""Weights shared through S3-compatible storage (moto's server, started here): uploaded once, fetched and
verified by a worker host whose artifact root starts empty."""

import hashlib
import io
import uuid

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer
from safetensors.numpy import save as safetensors_save

from registry import storage
from registry.models import Artifact
from registry.object_store import object_fetch, object_publish
from registry.selectors import artifact_weights_path
from registry.storage import StorageError
from tests.factories import FamilyFactory

CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region_name": "us-east-1"}
PREFIX = "artifacts"


@pytest.fixture(scope="session")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(settings, s3_endpoint):
    """A fresh bucket configured as the `artifacts` storage; returns a boto3 client and the bucket's name."""
    name = f"weights-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    options = {"bucket_name": name, "location": PREFIX, "endpoint_url": s3_endpoint, **CREDENTIALS}
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    return client, name


@pytest.fixture
def worker_host(settings, tmp_path):
    """Switch to another host's artifact root, empty as on a GPU worker that has never seen the weights."""

    def switch():
        settings.DRIFTBOARD_ARTIFACT_ROOT = tmp_path / "worker-root"
        return settings.DRIFTBOARD_ARTIFACT_ROOT

    return switch


def remote_body(bucket, relative_path: str) -> bytes:
    client, name = bucket
    return client.get_object(Bucket=name, Key=f"{PREFIX}/{relative_path}")["Body"].read()


def register(api_client, content: bytes) -> Artifact:
    FamilyFactory(slug="support-bot")
    upload = io.BytesIO(content)
    upload.name = "model.safetensors"
    body = {"family": "support-bot", "commit": "abc1234", "weights": upload}
    assert api_client.post("/api/v1/artifacts/", body, format="multipart").status_code == 202
    return Artifact.objects.get()


WEIGHTS = safetensors_save({"wte.weight": np.arange(64, dtype=np.float32).reshape(16, 4)})


def test_it_uploads_registered_weights_and_a_worker_fetches_a_verified_copy(api_client, bucket, worker_host):
    artifact = register(api_client, WEIGHTS)
    assert remote_body(bucket, artifact.storage_path) == WEIGHTS
    worker_root = worker_host()
    path = artifact_weights_path(artifact)
    assert path.is_relative_to(worker_root)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256 == hashlib.sha256(WEIGHTS).hexdigest()


def test_it_reads_the_local_copy_once_fetched(api_client, bucket, worker_host):
    artifact = register(api_client, WEIGHTS)
    worker_host()
    fetched = artifact_weights_path(artifact)
    client, name = bucket
    client.delete_object(Bucket=name, Key=f"{PREFIX}/{artifact.storage_path}")
    assert artifact_weights_path(artifact) == fetched and fetched.read_bytes() == WEIGHTS


def test_it_refuses_an_object_whose_content_changed_and_keeps_nothing(api_client, bucket, worker_host):
    artifact = register(api_client, WEIGHTS)
    client, name = bucket
    client.put_object(Bucket=name, Key=f"{PREFIX}/{artifact.storage_path}", Body=WEIGHTS[:-4] + b"\0\0\0\1")
    worker_root = worker_host()
    with pytest.raises(StorageError, match="hashes to"):
        artifact_weights_path(artifact)
    assert [p for p in worker_root.rglob("*") if p.is_file()] == []


def test_it_says_so_when_the_object_is_missing(api_client, bucket, worker_host):
    artifact = register(api_client, WEIGHTS)
    client, name = bucket
    client.delete_object(Bucket=name, Key=f"{PREFIX}/{artifact.storage_path}")
    worker_host()
    with pytest.raises(StorageError, match="missing"):
        artifact_weights_path(artifact)


def test_it_shares_a_model_folder_file_by_file(bucket, worker_host, settings, tmp_path):
    folder = storage.staging_path()
    (folder / "tokenizer").mkdir(parents=True)
    files = {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": WEIGHTS, "tokenizer/vocab.json": b"{}"}
    for relative, content in files.items():
        (folder / relative).write_bytes(content)
    stored = storage.commit_dir(folder)
    object_publish(stored)
    assert {key: remote_body(bucket, f"{stored.relative_path}/{key}") for key in files} == files
    worker_root = worker_host()
    fetched = object_fetch(relative_path=stored.relative_path, sha256=stored.sha256, is_dir=True)
    assert fetched.is_relative_to(worker_root)
    assert {str(p.relative_to(fetched)): p.read_bytes() for p in fetched.rglob("*") if p.is_file()} == files


def test_it_uploads_an_object_only_once(api_client, bucket):
    artifact = register(api_client, WEIGHTS)
    client, name = bucket
    marker = b"left alone: an object already present is never uploaded again"
    client.put_object(Bucket=name, Key=f"{PREFIX}/{artifact.storage_path}", Body=marker)
    object_publish(storage.StoredContent(artifact.sha256, artifact.size_bytes, artifact.storage_path, is_dir=False))
    assert remote_body(bucket, artifact.storage_path) == marker
