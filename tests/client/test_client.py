"""The CI client, run as a subprocess against a live server, the way a CI runner runs it."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from evals.models import EvalRun
from registry.models import Artifact
from tests.client.weights import write_safetensors
from tests.conftest import wait_for
from tests.factories import DatasetFactory, FamilyFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "8d3b1e0a4f2c6e9d7b5a3c1e0f2d4b6a8c0e2f41"


@pytest.fixture
def server(live_server, transactional_db, settings):
    settings.DRIFTBOARD_PUBLIC_URL = live_server.url
    token, _ = Token.objects.get_or_create(user=UserFactory(username="ci"))
    return live_server.url, token.key


def client_process(server, *args: str) -> subprocess.Popen:
    url, token = server
    return subprocess.Popen(
        [sys.executable, "-m", "driftboard.client", "submit", "--server", url, *args],
        cwd=ROOT,
        env={**os.environ, "DRIFTBOARD_TOKEN": token},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def submit_args(family: str, weights: Path, *extra: str) -> list[str]:
    return ["--family", family, "--weights", str(weights), "--commit", COMMIT, *extra]


def score_in_steps(artifact: Artifact, flag: str, status: str) -> None:
    """Move the artifact through queued and scoring as a worker would, then give it its verdict."""
    run = EvalRun.objects.create(artifact=artifact, dataset=DatasetFactory(name="golden"), samples_total=4)
    Artifact.objects.filter(pk=artifact.pk).update(status=Artifact.Status.QUEUED)
    time.sleep(0.3)
    Artifact.objects.filter(pk=artifact.pk).update(status=Artifact.Status.SCORING)
    for done in range(1, 5):
        EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.RUNNING, samples_done=done)
        time.sleep(0.3)
    Artifact.objects.filter(pk=artifact.pk).update(status=status, drift_flag=flag)


@pytest.mark.parametrize(
    ("flag", "status", "fail_on", "exit_code"),
    [
        ("red", Artifact.Status.HALTED, "red", 1),
        ("amber", Artifact.Status.HELD, "red", 0),
        ("amber", Artifact.Status.HELD, "amber", 1),
    ],
)
def test_it_waits_for_the_verdict_and_exits_by_fail_on(server, tmp_path, flag, status, fail_on, exit_code):
    family = FamilyFactory()
    weights = write_safetensors(tmp_path / "adapter.safetensors")
    process = client_process(
        server,
        *submit_args(family.slug, weights, "--wait", "--fail-on", fail_on, "--timeout", "60", "--poll-interval", "0.1"),
    )

    artifact = wait_for(lambda: Artifact.objects.filter(family=family).first(), timeout=30, message="the upload")
    score_in_steps(artifact, flag, status)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == exit_code, stderr
    assert stdout.splitlines()[0] == f"{server[0]}/artifacts/{artifact.pk}/"
    assert f"drift flag: {flag}" in stdout
    assert "golden v1: 2/4 running" in stderr
    assert artifact.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_it_returns_at_once_by_default(server, tmp_path):
    family = FamilyFactory()
    process = client_process(
        server, *submit_args(family.slug, write_safetensors(tmp_path / "w.safetensors"), "--branch", "support-tickets")
    )

    stdout, stderr = process.communicate(timeout=60)

    artifact = Artifact.objects.get(family=family)
    assert process.returncode == 0, stderr
    assert stdout == f"{server[0]}/artifacts/{artifact.pk}/\n"
    assert (artifact.commit_sha, artifact.branch, artifact.status) == (COMMIT, "support-tickets", "registered")


def test_it_times_out_with_exit_code_3(server, tmp_path):
    family = FamilyFactory()
    process = client_process(
        server,
        *submit_args(
            family.slug,
            write_safetensors(tmp_path / "w.safetensors"),
            "--wait",
            "--timeout",
            "1",
            "--poll-interval",
            "0.2",
        ),
    )

    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 3
    assert "timed out" in stderr


def test_it_prints_the_servers_error_and_exits_2(server, tmp_path):
    process = client_process(server, *submit_args("no-such-family", write_safetensors(tmp_path / "w.safetensors")))

    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 2
    assert stdout == ""
    assert "HTTP 400" in stderr and "no-such-family" in stderr


def test_it_exits_2_on_a_refused_token(live_server, transactional_db, tmp_path):
    process = client_process(
        (live_server.url, "not-a-token"), *submit_args("any", write_safetensors(tmp_path / "w.safetensors"))
    )

    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 2
    assert "HTTP 401" in stderr


def test_it_exits_2_on_usage_errors(tmp_path):
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftboard.client",
            "submit",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--family",
            "f",
            "--weights",
            str(tmp_path / "missing.bin"),
            "--commit",
            COMMIT,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert process.returncode == 2
    assert "does not exist" in process.stderr


class CountingUpload(BaseHTTPRequestHandler):
    """Reads an upload in chunks, keeping its length, hash and both ends; holds its answer until released."""

    received: dict = {}
    body_read = threading.Event()
    release = threading.Event()

    def do_POST(self):  # noqa: N802 - the http.server API
        length, digest, head, tail = int(self.headers["Content-Length"]), hashlib.sha256(), b"", b""
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            remaining -= len(chunk)
            digest.update(chunk)
            head = head or chunk[:65536]
            tail = (tail + chunk)[-512:]
        type(self).received = {
            "length": length,
            "sha256": digest.hexdigest(),
            "head": head,
            "tail": tail,
            "content_type": self.headers["Content-Type"],
        }
        self.body_read.set()
        self.release.wait(30)
        body = json.dumps({"id": 1, "url": "http://127.0.0.1/artifacts/1/", "version": 1, "status": "queued"}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def peak_memory_bytes(pid: int) -> int:
    """VmHWM: the process's peak resident memory since it started its program."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def write_big_file(path: Path, mebibytes: int) -> Path:
    with path.open("wb") as handle:
        for block in range(mebibytes):
            handle.write(hashlib.sha256(str(block).encode()).digest() * 32768)
    return path


def expected_body_hash(received: dict, weights: Path) -> tuple[str, int]:
    """The hash and length of the multipart body: the preamble the server saw, the file, the closing line."""
    boundary = received["content_type"].split("boundary=")[1].encode()
    file_starts = received["head"].index(b"\r\n\r\n", received["head"].index(b'name="weights"')) + 4
    closing = b"\r\n--" + boundary + b"--\r\n"
    expected = hashlib.sha256(received["head"][:file_starts])
    with weights.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            expected.update(chunk)
    expected.update(closing)
    return expected.hexdigest(), file_starts + weights.stat().st_size + len(closing)


def test_it_streams_the_weights_without_holding_them_in_memory(tmp_path):
    weights = write_big_file(tmp_path / "big.safetensors", mebibytes=64)
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), CountingUpload)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    # As a plain script in isolated mode: only the standard library is importable, as on a bare runner.
    command = [
        sys.executable,
        "-I",
        str(ROOT / "driftboard" / "client.py"),
        "submit",
        "--server",
        f"http://127.0.0.1:{receiver.server_port}",
        "--token",
        "t",
        "--family",
        "f",
        "--weights",
        str(weights),
        "--commit",
        COMMIT,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert CountingUpload.body_read.wait(60)
    peak = peak_memory_bytes(process.pid)
    CountingUpload.release.set()
    _, stderr = process.communicate(timeout=60)
    receiver.shutdown()

    assert process.returncode == 0, stderr
    assert peak < weights.stat().st_size / 2
    digest, length = expected_body_hash(CountingUpload.received, weights)
    assert (CountingUpload.received["sha256"], CountingUpload.received["length"]) == (digest, length)
    assert b'name="commit"\r\n\r\n' + COMMIT.encode() in CountingUpload.received["head"]


def test_it_needs_only_the_standard_library():
    process = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "driftboard" / "client.py"), "submit", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert process.returncode == 0, process.stderr
    assert "--fail-on" in process.stdout
