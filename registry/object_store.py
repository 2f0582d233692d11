"""Stored weights shared between hosts through Django's storage API (the `artifacts` storage).

Without an `artifacts` entry in STORAGES, DRIFTBOARD_ARTIFACT_ROOT is itself what web and workers
share (one host, or a network file system) and nothing here does anything. With one (S3-compatible
object storage through django-storages, configured by DRIFTBOARD_S3_BUCKET), the web process
uploads each newly stored object under its content address, and a worker that lacks an object
downloads it into its own DRIFTBOARD_ARTIFACT_ROOT, which then acts as a cache keyed by sha256: a
download is hashed on the way in and takes its place only if the hash is the artifact's.
"""

import os
import shutil
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

from registry import storage
from registry.storage import StorageError, StoredContent


def shared_storage() -> Storage | None:
    return storages["artifacts"] if "artifacts" in settings.STORAGES else None


def _local_files(stored: StoredContent) -> list[tuple[Path, str]]:
    """(local file, name in the shared storage) for every file of a stored object."""
    local = storage.absolute(stored.relative_path)
    if not stored.is_dir:
        return [(local, stored.relative_path)]
    return [
        (path, f"{stored.relative_path}/{path.relative_to(local).as_posix()}")
        for path in sorted(local.rglob("*"))
        if path.is_file()
    ]


def object_publish(stored: StoredContent) -> None:
    """Upload a stored object to the shared storage, unless it is there already (same content, same name)."""
    shared = shared_storage()
    if shared is None:
        return
    for path, name in _local_files(stored):
        if not shared.exists(name):
            with path.open("rb") as handle:
                shared.save(name, File(handle, name=path.name))


def object_fetch(*, relative_path: str, sha256: str, is_dir: bool) -> Path:
    """The local path of a stored object, downloaded and verified first if this host lacks it."""
    local = storage.absolute(relative_path)
    shared = shared_storage()
    if local.exists() or shared is None:
        return local
    download = _download_dir if is_dir else _download_file
    staged = download(shared, relative_path, sha256)
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, local)
    except OSError:  # another process on this host put the same object there first
        storage.discard(staged)
    return local


def _download_file(shared: Storage, name: str, sha256: str) -> Path:
    staged = storage.staging_path(PurePosixPath(name).suffix)
    try:
        with shared.open(name, "rb") as handle:
            digest, _ = storage.copy_hashing(storage.read_chunks(handle), staged)
    except FileNotFoundError as exc:
        storage.discard(staged)
        raise StorageError(f"{name} is missing from the shared artifact storage.") from exc
    _require_hash(staged, digest, sha256, name)
    return staged


def _download_dir(shared: Storage, name: str, sha256: str) -> Path:
    staged = storage.staging_path()
    for remote_file in _remote_files(shared, name):
        target = staged / remote_file.relative_to(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with shared.open(str(remote_file), "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, storage.CHUNK)
    if not staged.exists():
        raise StorageError(f"{name} is missing from the shared artifact storage.")
    _require_hash(staged, storage.hash_dir(staged)[0], sha256, name)
    return staged


def _remote_files(shared: Storage, folder: str) -> list[PurePosixPath]:
    folders, files = shared.listdir(folder)
    found = [PurePosixPath(folder) / file for file in files]
    for sub in folders:
        found += _remote_files(shared, f"{folder}/{sub}")
    return found


def _require_hash(staged: Path, actual: str, expected: str, name: str) -> None:
    if actual != expected:
        storage.discard(staged)
        raise StorageError(f"{name} in the shared artifact storage hashes to {actual[:12]}…, not {expected[:12]}…")
