import hashlib
import io
import json
import pickle
import struct

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from registry.models import Artifact, PromotionEvent
from registry.services import family_create
from tests.registry.weights import (
    bin_bytes,
    folder_archive,
    leftover_staging,
    safetensors_bytes,
    stored_objects,
    tiny_gpt2,
)

COMMIT = "a" * 40


def upload(client, family: str, content: bytes, name: str, commit: str = COMMIT, **extra):
    data = {"family": family, "commit": commit, "branch": "main", "weights": SimpleUploadedFile(name, content), **extra}
    return client.post("/api/v1/artifacts/", data, format="multipart")


@pytest.mark.parametrize(
    ("name", "make", "fmt"),
    [
        ("model.safetensors", safetensors_bytes, "safetensors"),
        ("pytorch_model.bin", bin_bytes, "bin"),
    ],
)
def test_it_registers_a_weights_file(api_client, family, session_artifact_root, name, make, fmt):
    content = make()
    response = upload(api_client, family.slug, content, name)

    assert response.status_code == 202, response.json()
    body = response.json()
    artifact = Artifact.objects.get(pk=body["id"])
    assert body["sha256"] == hashlib.sha256(content).hexdigest() == artifact.sha256
    assert body["url"].endswith(f"/artifacts/{artifact.pk}/")
    assert body["api_url"].endswith(f"/api/v1/artifacts/{artifact.pk}/")
    assert (body["version"], body["stage"], body["status"], body["drift_flag"]) == (1, "staging", "registered", "")
    assert artifact.format == fmt
    assert (session_artifact_root / artifact.storage_path).read_bytes() == content
    assert artifact.events.get().action == PromotionEvent.Action.REGISTER


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_it_registers_an_archived_model_folder(api_client, family, tmp_path, session_artifact_root, kind):
    folder = tmp_path / "candidate"
    tiny_gpt2(seed=5).save_pretrained(folder)

    response = upload(api_client, family.slug, folder_archive(folder, kind), f"candidate.{kind}")

    assert response.status_code == 202, response.json()
    artifact = Artifact.objects.get(pk=response.json()["id"])
    assert artifact.format == Artifact.Format.HF_DIR
    stored = session_artifact_root / artifact.storage_path
    assert (stored / "config.json").is_file() and (stored / "model.safetensors").is_file()
    assert leftover_staging(session_artifact_root) == []


def test_the_same_folder_packed_twice_has_one_identity(api_client, family, tmp_path):
    folder = tmp_path / "candidate"
    tiny_gpt2(seed=6).save_pretrained(folder)

    first = upload(api_client, family.slug, folder_archive(folder, "tar"), "m.tar").json()
    second = upload(api_client, family.slug, folder_archive(folder, "zip"), "m.zip").json()

    assert first["sha256"] == second["sha256"]
    assert first["id"] == second["id"]


def test_it_registers_a_server_side_path(api_client, family, import_root):
    weights = import_root / "from-path.safetensors"
    weights.write_bytes(safetensors_bytes(seed=7))

    response = api_client.post(
        "/api/v1/artifacts/", {"family": family.slug, "commit": COMMIT, "path": str(weights)}, format="json"
    )

    assert response.status_code == 202, response.json()
    assert Artifact.objects.get(pk=response.json()["id"]).original_name == "from-path.safetensors"


@pytest.mark.parametrize(
    "make_path",
    [
        lambda root, tmp: str(tmp / "outside.safetensors"),
        lambda root, tmp: str(root / ".." / "outside.safetensors"),
        lambda root, tmp: "/etc/passwd",
    ],
)
def test_it_refuses_paths_outside_the_import_roots(
    api_client, family, import_root, tmp_path, session_artifact_root, make_path
):
    (tmp_path / "outside.safetensors").write_bytes(safetensors_bytes())
    (import_root.parent / "outside.safetensors").write_bytes(safetensors_bytes())
    before = stored_objects(session_artifact_root)

    response = api_client.post(
        "/api/v1/artifacts/",
        {"family": family.slug, "commit": COMMIT, "path": make_path(import_root, tmp_path)},
        format="json",
    )

    assert response.status_code == 400
    assert "outside the allowed import roots" in response.json()["detail"]
    assert Artifact.objects.count() == 0
    assert stored_objects(session_artifact_root) == before


def test_it_returns_the_existing_artifact_for_the_same_content_and_commit(api_client, family):
    content = safetensors_bytes(seed=8)
    first = upload(api_client, family.slug, content, "w.safetensors")
    again = upload(api_client, family.slug, content, "w.safetensors")
    other_commit = upload(api_client, family.slug, content, "w.safetensors", commit="b" * 40)

    assert (first.status_code, again.status_code, other_commit.status_code) == (202, 200, 202)
    assert again.json()["id"] == first.json()["id"]
    assert other_commit.json()["version"] == 2
    assert Artifact.objects.count() == 2


def test_two_families_storing_the_same_bytes_share_one_file(api_client, family, base_folder, session_artifact_root):
    other = family_create(slug="tiny-2", kind="causal-lm", base_path=str(base_folder))
    content = safetensors_bytes(seed=9)

    a = Artifact.objects.get(pk=upload(api_client, family.slug, content, "w.safetensors").json()["id"])
    b = Artifact.objects.get(pk=upload(api_client, other.slug, content, "w.safetensors").json()["id"])

    assert a.storage_path == b.storage_path
    assert [p for p in stored_objects(session_artifact_root) if a.sha256 in p.name] == [
        session_artifact_root / a.storage_path
    ]


def truncated(content: bytes) -> bytes:
    return content[: len(content) // 2]


def lying_header(content: bytes) -> bytes:
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 10_000
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + content[8 + length :]


def huge_header_length(content: bytes) -> bytes:
    return struct.pack("<Q", 10**12) + content[8:]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (truncated, "beyond the end of the file"),
        (lying_header, "beyond the end of the file"),
        (huge_header_length, "more than the file holds"),
        (lambda c: b"not a safetensors file at all", "more than the file holds"),
    ],
)
def test_it_refuses_corrupt_safetensors_and_stores_nothing(api_client, family, session_artifact_root, corrupt, message):
    before = stored_objects(session_artifact_root)

    response = upload(api_client, family.slug, corrupt(safetensors_bytes(seed=10)), "bad.safetensors")

    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert Artifact.objects.count() == 0
    assert stored_objects(session_artifact_root) == before
    assert leftover_staging(session_artifact_root) == []


def test_it_refuses_weights_of_the_wrong_shape_for_the_family(api_client, family, session_artifact_root):
    response = upload(api_client, family.slug, safetensors_bytes(seed=11, n_embd=16), "wide.safetensors")

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "do not match the family's base architecture" in detail and "[16] instead of [8]" in detail
    assert Artifact.objects.count() == 0


def test_it_refuses_an_unknown_family(api_client):
    response = upload(api_client, "no-such-family", safetensors_bytes(), "w.safetensors")

    assert response.status_code == 400
    assert "family" in response.json()


class MarkerWriter:
    """A pickle that would create a file when loaded — it must never be executed."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_it_refuses_a_pickle_that_carries_code_without_running_it(api_client, family, tmp_path, session_artifact_root):
    marker = tmp_path / "pwned"
    import torch

    buffer = io.BytesIO()
    torch.save(
        {"wte.weight": torch.zeros(2), "payload": MarkerWriter(str(marker))},
        buffer,
        pickle_protocol=pickle.DEFAULT_PROTOCOL,
    )

    response = upload(api_client, family.slug, buffer.getvalue(), "evil.bin")

    assert response.status_code == 400
    assert "refused" in response.json()["detail"]
    assert not marker.exists()
    assert Artifact.objects.count() == 0
    assert leftover_staging(session_artifact_root) == []


def test_it_refuses_an_unsupported_file_type(api_client, family):
    response = upload(api_client, family.slug, b"hello", "weights.txt")

    assert response.status_code == 400
    assert "Unsupported weights file" in response.json()["detail"]


def test_it_rejects_a_submission_with_both_file_and_path(api_client, family):
    response = upload(api_client, family.slug, safetensors_bytes(), "w.safetensors", path="/tmp/x")

    assert response.status_code == 400
