"""Content hashes shared by the registry, golden datasets and the result cache (no torch import)."""

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

_READ_CHUNK = 1 << 20
# Hashes of files already read in this process, by (path, inode, size, modification time in ns): a
# worker asks for the same weights and embedder folders for every run and every prompt's cache key,
# and re-reading hundreds of megabytes each time was most of a cached run's time.
_KNOWN: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
_KNOWN_MAX = 4096
_KNOWN_LOCK = threading.Lock()


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in chunks so that large weights need little memory; a file read
    before and not changed since (same inode, size and modification time) is not read again."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if (known := _KNOWN.get(key)) is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    with _KNOWN_LOCK:
        _KNOWN[key] = digest.hexdigest()
        while len(_KNOWN) > _KNOWN_MAX:
            _KNOWN.popitem(last=False)
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


def sample_sha256(
    text: str | None,
    reference: str | None = None,
    *,
    prompt: str | None = None,
    messages: list[dict[str, str]] | None = None,
    choices: list[str] | None = None,
    answer: list[int] | None = None,
    turns: list[dict[str, str]] | None = None,
) -> str:
    """Hex sha256 of what a scorer reads from one sample: text, reference, prompt or chat messages,
    a multiple-choice question's choices and gold answer, and a conversation's turns.

    A sample without a prompt (None or empty) hashes as `[text, reference]`, as it always has, so
    results cached before prompts existed stay valid; one with a prompt or messages hashes an object
    of all four, plus `choices` and `answer` only when it has them (so its hash is the one it had
    before multiple-choice columns existed); `turns` likewise enters only when there are some.
    """
    if not prompt and not messages and not turns:
        return _json_sha256([text, reference])
    asked = {"text": text, "reference": reference, "prompt": prompt, "messages": messages}
    if choices is not None or answer is not None:
        asked |= {"choices": choices, "answer": answer}
    if turns:
        asked["turns"] = turns
    return _json_sha256(asked)


def prompt_sha256(prompt: str | list[dict[str, str]]) -> str:
    """Hex sha256 of what the model is asked (a plain prompt or chat messages): a generation's key."""
    return _json_sha256({"prompt": prompt} if isinstance(prompt, str) else {"messages": prompt})


def _json_sha256(value: object) -> str:
    canonical = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
