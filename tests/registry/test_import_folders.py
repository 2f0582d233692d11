"""Server-side imports copy regular files only: a symlink, FIFO or device inside an import-root folder
is refused by name (never followed, never opened), and nothing is stored."""

import os
import shutil
import threading
from pathlib import Path

import pytest

from registry import storage
from registry.models import Artifact
from tests.registry.weights import safetensors_bytes, stored_objects, tiny_gpt2

COMMIT = "c" * 40


def register_path(client, path: Path):
    return client.post("/api/v1/artifacts/", {"family": "tiny", "commit": COMMIT, "path": str(path)}, format="json")


def staged(root: Path) -> set[Path]:
    return set((storage.artifact_root() / "tmp").iterdir())


@pytest.fixture
def model_in_root(import_root, request) -> Path:
    folder = import_root / f"model-{request.node.name[:40]}"
    tiny_gpt2(seed=12).save_pretrained(folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def writer_unblocking(fifo: Path) -> threading.Thread:
    """Opens the FIFO for writing once, so a reader that (wrongly) opened it is released rather than hung."""

    def release() -> None:
        descriptor = os.open(fifo, os.O_WRONLY)
        os.close(descriptor)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread


def test_it_imports_a_folder_of_regular_files(api_client, family, model_in_root):
    response = register_path(api_client, model_in_root)
    assert response.status_code == 202, response.json()


@pytest.mark.parametrize(
    "make_link",
    [
        lambda folder, outside: (folder / "extra.safetensors").symlink_to(outside),
        lambda folder, outside: (folder / "loop").symlink_to(folder / "loop"),
        lambda folder, outside: (folder / "nested").symlink_to(folder),
    ],
    ids=["outside-the-root", "self-loop", "parent-folder"],
)
def test_it_refuses_a_symlink_inside_the_folder(
    api_client, family, model_in_root, tmp_path, session_artifact_root, make_link
):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(safetensors_bytes(seed=13))
    make_link(model_in_root, outside)
    before, objects = staged(session_artifact_root), stored_objects(session_artifact_root)

    response = register_path(api_client, model_in_root)

    assert response.status_code == 400
    assert "symbolic link" in response.json()["detail"]
    assert staged(session_artifact_root) == before
    assert stored_objects(session_artifact_root) == objects
    assert not Artifact.objects.exists()


def test_it_refuses_a_linked_weights_file_even_when_config_json_is_linked_inside_the_root(
    api_client, family, model_in_root, import_root
):
    (import_root / "shared-config.json").write_text((model_in_root / "config.json").read_text())
    (model_in_root / "config.json").unlink()
    (model_in_root / "config.json").symlink_to(import_root / "shared-config.json")
    response = register_path(api_client, model_in_root)
    assert response.status_code == 400
    assert "'config.json' in the folder is a symbolic link" in response.json()["detail"]


def test_it_refuses_a_fifo_inside_the_folder(api_client, family, model_in_root, session_artifact_root):
    fifo = model_in_root / "pipe.bin"
    os.mkfifo(fifo)
    writer = writer_unblocking(fifo)
    before = staged(session_artifact_root)

    response = register_path(api_client, model_in_root)

    assert response.status_code == 400
    assert "'pipe.bin' in the folder is a FIFO" in response.json()["detail"]
    assert staged(session_artifact_root) == before
    os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # let the helper thread finish
    writer.join(timeout=5)


def test_it_refuses_a_fifo_registered_as_a_weights_file(api_client, family, import_root):
    fifo = import_root / "weights-pipe.safetensors"
    os.mkfifo(fifo)
    writer = writer_unblocking(fifo)
    try:
        response = register_path(api_client, fifo)
        assert response.status_code == 400
        assert "FIFO" in response.json()["detail"]
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=5)
        fifo.unlink()


def test_it_refuses_a_device_inside_the_folder(api_client, family, model_in_root):
    if not Path("/dev/null").is_char_device():
        pytest.skip("no /dev/null character device here")
    try:
        os.mknod(model_in_root / "null.bin", 0o600 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs privileges")
    response = register_path(api_client, model_in_root)
    assert response.status_code == 400
    assert "'null.bin' in the folder is a FIFO, socket or device" in response.json()["detail"]
