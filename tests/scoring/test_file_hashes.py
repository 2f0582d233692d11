"""A file's hash is read once per process while the file stays as it is, and read again once it changes."""

import hashlib
import os

from evals.scoring import hashing
from evals.scoring.hashing import file_sha256, weights_sha256


def test_an_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 1000)
    first = file_sha256(path)
    reads = []
    real_open = open
    monkeypatch.setattr(hashing, "open", lambda *a, **k: reads.append(a[0]) or real_open(*a, **k), raising=False)

    assert file_sha256(path) == first == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert reads == []


def test_a_changed_file_is_hashed_anew_even_at_the_same_size(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"aaaa")
    before = file_sha256(path)
    stat = path.stat()
    path.write_bytes(b"bbbb")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    assert file_sha256(path) == hashlib.sha256(b"bbbb").hexdigest() != before


def test_a_folder_hash_follows_an_edited_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"one")
    (tmp_path / "b.bin").write_bytes(b"two")
    before = weights_sha256(tmp_path)
    (tmp_path / "b.bin").write_bytes(b"three")

    assert weights_sha256(tmp_path) != before
