"""Content hashes shared by the registry, golden datasets and the result cache (no torch import)."""

import hashlib
import json
from pathlib import Path

_READ_CHUNK = 1 << 20


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in chunks so that large weights need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(path: Path | str) -> str:
    """Hex sha256 of a weights file, or of a weights folder as a whole.

    A folder hashes every file it holds (weights, config, tokenizer) by relative path and content,
    so renaming or editing any of them gives a new hash.
    """
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(item for item in path.rglob("*") if item.is_file()):
        relative = file.relative_to(path).as_posix()
        digest.update(f"{relative}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def sample_sha256(text: str, reference: str | None = None) -> str:
    """Hex sha256 of what a scorer reads from one sample: its text and optional reference."""
    canonical = json.dumps([text, reference], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
