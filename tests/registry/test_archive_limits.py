"""Archive bombs and staging leaks: archives are bounded before they are unpacked, and nothing a
refused (or crashed) registration staged is left behind; beat sweeps what a dead process left."""

import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from registry import services, storage, weights_check
from registry.models import Artifact
from registry.tasks import sweep_staging
from tests.registry.weights import folder_archive, stored_objects, tiny_gpt2

COMMIT = "b" * 40
MIB = 1024 * 1024


def upload(client, content: bytes, name: str):
    data = {"family": "tiny", "commit": COMMIT, "weights": SimpleUploadedFile(name, content)}
    return client.post("/api/v1/artifacts/", data, format="multipart")


def staged(root: Path) -> set[Path]:
    return set((storage.artifact_root() / "tmp").iterdir())


@pytest.fixture
def model_folder(tmp_path) -> Path:
    folder = tmp_path / "candidate"
    tiny_gpt2(seed=11).save_pretrained(folder)
    return folder


def zeros_archive(kind: str, unpacked_bytes: int) -> bytes:
    """A small archive of one file of zeros that unpacks to `unpacked_bytes`."""
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr("model/zeros.bin", b"\0" * unpacked_bytes)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
            member = tarfile.TarInfo("model/zeros.bin")
            member.size = unpacked_bytes
            bundle.addfile(member, io.BytesIO(b"\0" * unpacked_bytes))
    return buffer.getvalue()


@pytest.mark.parametrize(("kind", "name"), [("zip", "bomb.zip"), ("tar", "bomb.tar.gz")])
def test_it_refuses_an_archive_that_unpacks_past_the_limit_with_413(
    api_client, family, settings, session_artifact_root, kind, name
):
    settings.DRIFTBOARD_MAX_UNPACKED_BYTES = 4 * MIB
    settings.DRIFTBOARD_MAX_COMPRESSION_RATIO = 1e9
    before, objects = staged(session_artifact_root), stored_objects(session_artifact_root)

    response = upload(api_client, zeros_archive(kind, 8 * MIB), name)

    assert response.status_code == 413
    assert "DRIFTBOARD_MAX_UNPACKED_BYTES" in response.json()["detail"]
    assert staged(session_artifact_root) == before
    assert stored_objects(session_artifact_root) == objects
    assert not Artifact.objects.exists()


@pytest.mark.parametrize(("kind", "name"), [("zip", "bomb.zip"), ("tar", "bomb.tar.gz")])
def test_it_refuses_an_archive_compressed_past_the_ratio_with_400(
    api_client, family, settings, session_artifact_root, kind, name
):
    settings.DRIFTBOARD_MAX_COMPRESSION_RATIO = 50
    before = staged(session_artifact_root)

    response = upload(api_client, zeros_archive(kind, 2 * MIB), name)

    assert response.status_code == 400
    assert "DRIFTBOARD_MAX_COMPRESSION_RATIO" in response.json()["detail"]
    assert staged(session_artifact_root) == before
    assert not Artifact.objects.exists()


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_it_refuses_an_archive_of_too_many_members_with_400(
    api_client, family, settings, session_artifact_root, model_folder, kind
):
    settings.DRIFTBOARD_MAX_ARCHIVE_MEMBERS = 2
    before = staged(session_artifact_root)

    response = upload(api_client, folder_archive(model_folder, kind), f"candidate.{kind}")

    assert response.status_code == 400
    assert "DRIFTBOARD_MAX_ARCHIVE_MEMBERS" in response.json()["detail"]
    assert staged(session_artifact_root) == before
    assert not Artifact.objects.exists()


def test_it_takes_a_model_folder_within_every_limit(api_client, family, settings, model_folder):
    content = folder_archive(model_folder, "tar")
    settings.DRIFTBOARD_MAX_UNPACKED_BYTES = sum(p.stat().st_size for p in model_folder.iterdir())
    settings.DRIFTBOARD_MAX_ARCHIVE_MEMBERS = 1 + len(list(model_folder.iterdir()))  # the folder, its files
    response = upload(api_client, content, "candidate.tar")
    assert response.status_code == 202, response.json()


def test_the_unpacked_limit_defaults_to_the_upload_limit(settings):
    assert "DRIFTBOARD_MAX_UNPACKED_BYTES" not in os.environ
    assert settings.DRIFTBOARD_MAX_UNPACKED_BYTES == settings.DRIFTBOARD_MAX_UPLOAD_BYTES


def test_it_reads_an_upper_case_zip_as_a_zip(api_client, family, model_folder):
    response = upload(api_client, folder_archive(model_folder, "zip"), "CANDIDATE.ZIP")
    assert response.status_code == 202, response.json()
    assert Artifact.objects.get().format == Artifact.Format.HF_DIR


def test_an_unexpected_error_while_storing_leaves_nothing_staged(
    family, model_folder, session_artifact_root, monkeypatch
):
    def crash(folder, base):
        raise RuntimeError("the health check crashed")

    monkeypatch.setattr(weights_check, "check", crash)
    before = staged(session_artifact_root)
    archive = SimpleUploadedFile("candidate.tar", folder_archive(model_folder, "tar"))

    with pytest.raises(RuntimeError):
        services.artifact_register(family=family, commit_sha=COMMIT, upload=archive)

    assert staged(session_artifact_root) == before


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (past, past), follow_symlinks=False)


def test_the_staging_sweep_removes_stale_entries_and_keeps_fresh_ones(settings, session_artifact_root):
    settings.DRIFTBOARD_STAGING_MAX_AGE_SECONDS = 3600
    stale_file, fresh_file = storage.staging_path(".safetensors"), storage.staging_path(".bin")
    stale_folder, busy_folder = storage.staging_path(), storage.staging_path()
    for folder in (stale_folder, busy_folder):
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "config.json").write_text("{}")
    stale_file.write_bytes(b"x")
    fresh_file.write_bytes(b"x")
    for path in (stale_file, stale_folder, busy_folder):
        age(path, 7200)
    (busy_folder / "model" / "model.safetensors").write_bytes(b"still being unpacked")

    assert sweep_staging() >= 2

    assert not stale_file.exists() and not stale_folder.exists()
    assert fresh_file.exists() and busy_folder.exists()
    storage.discard(fresh_file)
    storage.discard(busy_folder)


def test_beat_schedules_the_staging_sweep(settings):
    schedule = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "registry.tasks.sweep_staging" in schedule
