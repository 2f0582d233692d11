"""Content-addressed storage of weights under the artifact root.

Bytes are hashed while they are written, never read twice and never held in memory; the same
content is stored once whichever family or commit registers it. A folder's identity is the sha256
over its sorted (relative path, file sha256) pairs, so the same model packed twice hashes alike.
"""

import hashlib
import os
import shutil
import stat
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

CHUNK = 1024 * 1024


class StorageError(ValueError):
    """The submitted content cannot be stored; the message says why."""


class UploadTooLarge(Exception):
    """The request's files went past DRIFTBOARD_MAX_UPLOAD_BYTES; nothing of them was kept."""

    def __init__(self, limit: int):
        super().__init__(f"The upload is larger than the {limit:,} bytes allowed (DRIFTBOARD_MAX_UPLOAD_BYTES).")
        self.limit = limit


class ArchiveTooLarge(StorageError):
    """The archive would unpack past DRIFTBOARD_MAX_UNPACKED_BYTES (413, like an upload that is too large)."""

    status_code = 413


@dataclass(frozen=True)
class StoredContent:
    sha256: str
    size_bytes: int
    relative_path: str
    is_dir: bool


def artifact_root() -> Path:
    root = Path(settings.DRIFTBOARD_ARTIFACT_ROOT)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    return root


def staging_path(suffix: str = "") -> Path:
    return artifact_root() / "tmp" / f"{uuid.uuid4().hex}{suffix}"


def copy_hashing(chunks: Iterable[bytes], destination: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with destination.open("wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def read_chunks(handle: BinaryIO) -> Iterable[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk


def object_path(sha256: str, suffix: str) -> Path:
    return artifact_root() / "objects" / sha256[:2] / f"{sha256}{suffix}"


def commit_file(staged: Path, sha256: str, size: int, suffix: str) -> StoredContent:
    """Move a hashed staging file to its content address, or drop it if that content exists."""
    final = object_path(sha256, suffix)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        staged.unlink(missing_ok=True)
    else:
        os.replace(staged, final)
    return StoredContent(sha256, size, str(final.relative_to(artifact_root())), is_dir=False)


def commit_dir(staged: Path) -> StoredContent:
    sha256, size = hash_dir(staged)
    final = object_path(sha256, "")
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        os.replace(staged, final)
    return StoredContent(sha256, size, str(final.relative_to(artifact_root())), is_dir=True)


def hash_dir(folder: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        file_digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in read_chunks(handle):
                file_digest.update(chunk)
                size += len(chunk)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest(), size


def extract_archive(archive: Path, name: str) -> Path:
    """Unpack a .tar/.zip of a model folder into a staging folder, refusing unsafe members.

    The members' sizes are added up before anything is written, so an archive that would unpack past
    the limits (total bytes, member count, compression ratio) is refused without filling the disk.
    """
    target = staging_path()
    target.mkdir()
    budget = _UnpackBudget(archive.stat().st_size)
    try:
        if name.lower().endswith(".zip"):
            _extract_zip(archive, target, budget)
        else:
            _extract_tar(archive, target, budget)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise StorageError(f"The archive cannot be read: {exc}") from exc
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return _single_top_folder(target)


class _UnpackBudget:
    """Counts an archive's members and their sizes against the unpacking limits."""

    def __init__(self, archive_bytes: int):
        self.archive_bytes = max(archive_bytes, 1)
        self.members = 0
        self.unpacked_bytes = 0

    def add(self, size: int) -> None:
        self.members += 1
        self.unpacked_bytes += max(size, 0)
        if self.members > settings.DRIFTBOARD_MAX_ARCHIVE_MEMBERS:
            raise StorageError(
                f"The archive holds more than {settings.DRIFTBOARD_MAX_ARCHIVE_MEMBERS:,} members "
                "(DRIFTBOARD_MAX_ARCHIVE_MEMBERS)."
            )
        if self.unpacked_bytes > settings.DRIFTBOARD_MAX_UNPACKED_BYTES:
            raise ArchiveTooLarge(
                f"The archive unpacks to more than the {settings.DRIFTBOARD_MAX_UNPACKED_BYTES:,} bytes allowed "
                "(DRIFTBOARD_MAX_UNPACKED_BYTES)."
            )
        if self.unpacked_bytes / self.archive_bytes > settings.DRIFTBOARD_MAX_COMPRESSION_RATIO:
            raise StorageError(
                f"The archive unpacks to more than {settings.DRIFTBOARD_MAX_COMPRESSION_RATIO:g} times its size "
                "(DRIFTBOARD_MAX_COMPRESSION_RATIO)."
            )


def _check_member(name: str) -> None:
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts:
        raise StorageError(f"The archive member {name!r} points outside the folder.")


def _extract_zip(archive: Path, target: Path, budget: _UnpackBudget) -> None:
    # A zip member never yields more than its declared file_size (zipfile stops there and checks the CRC).
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            _check_member(member.filename)
            budget.add(member.file_size)
        bundle.extractall(target)


def _extract_tar(archive: Path, target: Path, budget: _UnpackBudget) -> None:
    # Iterating reads each header before skipping its data, so the limits stop a bomb at its first big member.
    with tarfile.open(archive) as bundle:
        for member in bundle:
            _check_member(member.name)
            if not (member.isfile() or member.isdir()):
                raise StorageError(f"The archive member {member.name!r} is a link or device; only files are allowed.")
            budget.add(member.size)
        bundle.extractall(target, filter="data")


def _single_top_folder(target: Path) -> Path:
    """Archives often wrap the model in one folder; use what is inside it."""
    entries = list(target.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        inner = staging_path()
        os.replace(entries[0], inner)
        target.rmdir()
        return inner
    return target


def resolve_import_path(raw: str) -> Path:
    """A server-side path, allowed only under one of DRIFTBOARD_IMPORT_ROOTS."""
    roots = settings.DRIFTBOARD_IMPORT_ROOTS
    if not roots:
        raise StorageError("Registering server-side paths is disabled: set DRIFTBOARD_IMPORT_ROOTS.")
    try:
        path = Path(raw).expanduser().resolve()
        exists = path.exists()
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte, a name too long
        raise StorageError(f"The path {raw!r} cannot be resolved.") from exc
    if not any(path.is_relative_to(root) for root in roots):
        raise StorageError(f"The path {raw!r} is outside the allowed import roots.")
    if not exists:
        raise StorageError(f"The path {raw!r} does not exist.")
    return path


def copy_file_to_staging(source: Path, suffix: str) -> tuple[Path, str, int]:
    """Copy one regular file (never a FIFO or device) into staging; return (staged path, sha256, size)."""
    target = staging_path(suffix)
    try:
        with _open_regular(source, source.name) as handle:
            sha256, size = copy_hashing(read_chunks(handle), target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target, sha256, size


def copy_dir_to_staging(source: Path) -> Path:
    """Copy a model folder into staging, refusing any symlink, FIFO, socket or device inside it.

    Entries are never followed: a link pointing outside the import roots (or at itself) is refused,
    not copied.
    """
    target = staging_path()
    try:
        _copy_tree(source, target, Path())
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _copy_tree(source: Path, target: Path, relative: Path) -> None:
    target.mkdir()
    with os.scandir(source) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            name = (relative / entry.name).as_posix()
            if entry.is_symlink():
                raise StorageError(f"{name!r} in the folder is a symbolic link; only regular files are imported.")
            if entry.is_dir(follow_symlinks=False):
                _copy_tree(Path(entry.path), target / entry.name, relative / entry.name)
            elif entry.is_file(follow_symlinks=False):
                with _open_regular(Path(entry.path), name) as handle, (target / entry.name).open("wb") as out:
                    shutil.copyfileobj(handle, out, CHUNK)
            else:
                raise StorageError(
                    f"{name!r} in the folder is a FIFO, socket or device; only regular files are imported."
                )


def _open_regular(path: Path, name: str) -> BinaryIO:
    """Open without following a link or blocking on a FIFO, and only if it is a regular file."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise StorageError(f"{name!r} cannot be opened as a regular file ({exc.strerror}).") from exc
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise StorageError(f"{name!r} is a FIFO, socket or device; only regular files are imported.")
    return os.fdopen(descriptor, "rb")


def staging_sweep(*, older_than_seconds: float) -> int:
    """Remove staging entries untouched for `older_than_seconds` (left by a crashed request); return how many."""
    cutoff = time.time() - older_than_seconds
    removed = 0
    for entry in (artifact_root() / "tmp").iterdir():
        try:
            if _last_modified(entry) < cutoff:
                discard(entry)
                removed += 1
        except FileNotFoundError:  # finished (moved or discarded) while we looked
            continue
    return removed


def _last_modified(entry: Path) -> float:
    """A folder being unpacked or copied is as fresh as the newest file in it."""
    if not entry.is_dir() or entry.is_symlink():
        return entry.lstat().st_mtime
    return max([entry.lstat().st_mtime, *(p.lstat().st_mtime for p in entry.rglob("*"))])


def discard(path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def absolute(relative_path: str) -> Path:
    return artifact_root() / relative_path


class HashedUpload(UploadedFile):
    """An upload already written to the staging area, with its sha256 computed on the way in."""

    def __init__(self, path: Path, name: str, size: int, sha256: str, content_type: str | None):
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.staged_path = path
        self.sha256 = sha256

    def open(self, mode: str = "rb"):  # noqa: ARG002 - the staged file is read back in binary only
        self.file = self.staged_path.open("rb")
        return self

    def close(self) -> None:
        if self.file:
            self.file.close()


class HashingUploadHandler(FileUploadHandler):
    """Streams an upload straight into the artifact staging area, hashing as it goes.

    The files of one request may hold DRIFTBOARD_MAX_UPLOAD_BYTES together; past that the request
    fails with UploadTooLarge and every file it staged is removed.
    """

    def __init__(self, request=None):
        super().__init__(request)
        self._staged: list[Path] = []
        self._request_bytes = 0

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self._path = staging_path(Path(self.file_name or "").suffix[:20])
        self._staged.append(self._path)
        self._handle = self._path.open("wb")
        self._digest = hashlib.sha256()
        self._size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self._size += len(raw_data)
        self._request_bytes += len(raw_data)
        if self._request_bytes > settings.DRIFTBOARD_MAX_UPLOAD_BYTES:
            self.upload_interrupted()
            for path in self._staged:
                path.unlink(missing_ok=True)
            raise UploadTooLarge(settings.DRIFTBOARD_MAX_UPLOAD_BYTES)
        self._digest.update(raw_data)
        self._handle.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> HashedUpload:
        self._handle.close()
        return HashedUpload(self._path, self.file_name, self._size, self._digest.hexdigest(), self.content_type)

    def upload_interrupted(self) -> None:
        self._handle.close()
        self._path.unlink(missing_ok=True)


def stage_uploaded(upload: UploadedFile) -> tuple[Path, str, int]:
    """Return (staged path, sha256, size) for an upload, hashing it only if no handler did."""
    if isinstance(upload, HashedUpload):
        return upload.staged_path, upload.sha256, upload.size
    staged = staging_path(Path(upload.name or "").suffix[:20])
    sha256, size = copy_hashing(upload.chunks(), staged)
    return staged, sha256, size
