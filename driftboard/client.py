"""Submit weights to Driftboard from a CI runner and, if asked, wait for the drift verdict.

    python -m driftboard.client submit --server URL --token TOKEN --family SLUG --weights PATH \\
        --commit SHA [--branch B] [--pr-url URL] [--wait] [--timeout S] [--fail-on red|amber]
        [--github-output FILE] [--dotenv FILE]

Standard library only: it runs on any runner with Python 3.10 or later. The weights are streamed,
never read into memory; a folder is sent as a tar archive. The artifact's page URL goes to stdout,
progress to stderr. --server and --token default to $DRIFTBOARD_URL and $DRIFTBOARD_TOKEN, which keeps
the token out of the runner's process list.

Exit codes: 0 ok, 1 the drift flag reached --fail-on (or scoring failed), 2 usage or HTTP error,
3 timed out waiting.

--github-output appends `artifact-url=` and `flag=` to a GitHub Actions output file, --dotenv writes
DRIFTBOARD_ARTIFACT_URL= and DRIFTBOARD_FLAG= for a GitLab dotenv report (integrations/); the flag is
`pending` while the verdict is not in.
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

EXIT_OK, EXIT_FLAGGED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3
CHUNK_BYTES = 1024 * 1024
HTTP_TIMEOUT_SECONDS = 300
WAITING_STATUSES = frozenset({"registered", "queued", "scoring"})
FLAG_SEVERITY = {"green": 0, "incomparable": 1, "amber": 2, "red": 3}
USER_AGENT = "driftboard-client/1"


class ClientError(Exception):
    """An HTTP or network failure, with the server's own message when it sent one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Server:
    base_url: str
    token: str

    def connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.base_url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(
                parts.netloc, timeout=HTTP_TIMEOUT_SECONDS, context=ssl.create_default_context()
            )
        if parts.scheme == "http":
            return http.client.HTTPConnection(parts.netloc, timeout=HTTP_TIMEOUT_SECONDS)
        raise ClientError(f"--server must be an http(s) URL, not {self.base_url!r}")

    def path(self, api_path: str) -> str:
        return urlsplit(self.base_url).path.rstrip("/") + api_path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}", "Accept": "application/json", "User-Agent": USER_AGENT}


class MultipartUpload:
    """A multipart/form-data body of text fields and one file, produced chunk by chunk."""

    def __init__(self, fields: dict[str, str], file_field: str, path: Path):
        self.boundary = f"driftboard-{uuid.uuid4().hex}"
        self.path = path
        head = b"".join(self._part_header(name) + value.encode() + b"\r\n" for name, value in fields.items())
        self.head = head + self._part_header(file_field, path.name)
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    def _part_header(self, name: str, filename: str | None = None) -> bytes:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            safe = filename.replace("\\", "_").replace('"', "%22").replace("\r", "").replace("\n", "")
            disposition += f'; filename="{safe}"\r\nContent-Type: application/octet-stream'
        return f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        return len(self.head) + self.path.stat().st_size + len(self.tail)

    def chunks(self) -> Iterator[bytes]:
        yield self.head
        with self.path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk
        yield self.tail


def _describe(key: str, value: object) -> str:
    text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if key in ("detail", "non_field_errors") else f"{key}: {text}"


def error_message(status: int, raw: bytes) -> str:
    """The server's explanation: DRF's {"detail": …} or {"field": ["…"]}, else the start of the body."""
    try:
        body = json.loads(raw)
    except ValueError:
        return f"HTTP {status}: {raw[:300].decode(errors='replace').strip()}"
    if isinstance(body, dict):
        return f"HTTP {status}: " + " | ".join(_describe(key, value) for key, value in body.items())
    return f"HTTP {status}: {body}"


def _answer(connection: http.client.HTTPConnection) -> tuple[int, dict]:
    response = connection.getresponse()
    raw = response.read()
    if response.status >= 400:
        raise ClientError(error_message(response.status, raw), response.status)
    try:
        return response.status, json.loads(raw)
    except ValueError:
        raise ClientError(f"HTTP {response.status}: the answer is not JSON", response.status) from None


def upload(server: Server, body: MultipartUpload) -> tuple[int, dict]:
    """POST /api/v1/artifacts/ with the file streamed in chunks."""
    connection = server.connection()
    try:
        connection.putrequest("POST", server.path("/api/v1/artifacts/"))
        for name, value in {
            **server.headers(),
            "Content-Type": body.content_type,
            "Content-Length": str(body.content_length),
        }.items():
            connection.putheader(name, value)
        connection.endheaders()
        try:
            for chunk in body.chunks():
                connection.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading (too large, bad token): its answer says why
        return _answer(connection)
    except (OSError, http.client.HTTPException) as exc:
        raise ClientError(f"cannot reach {server.base_url}: {exc}") from exc
    finally:
        connection.close()


def get_json(server: Server, api_path: str) -> dict:
    connection = server.connection()
    try:
        connection.request("GET", server.path(api_path), headers=server.headers())
        return _answer(connection)[1]
    except (OSError, http.client.HTTPException) as exc:
        raise ClientError(f"cannot reach {server.base_url}: {exc}") from exc
    finally:
        connection.close()


@contextmanager
def weights_file(path: Path) -> Iterator[Path]:
    """The file to send: the path itself, or a temporary tar archive of a folder."""
    if not path.is_dir():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="driftboard-") as scratch:
        archive = Path(scratch) / f"{path.name or 'weights'}.tar"
        with tarfile.open(archive, "w") as bundle:
            bundle.add(path, arcname=path.name or "weights")
        yield archive


def progress_line(artifact: dict) -> str:
    runs = artifact.get("runs") or []
    done = ", ".join(f"{r['dataset']}: {r['samples_done']}/{r['samples_total']} {r['status']}" for r in runs)
    return f"v{artifact.get('version')} {artifact.get('status')}" + (f" · {done}" if done else "")


def wait_for_verdict(server: Server, artifact_id: int, timeout: float, interval: float) -> dict | None:
    """Poll the artifact until it leaves registered/queued/scoring; None on timeout."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        try:
            artifact = get_json(server, f"/api/v1/artifacts/{artifact_id}/")
        except ClientError as exc:
            if exc.status is not None and exc.status < 500:
                raise
            artifact = None  # a restarting server or a proxy hiccup: keep waiting
            print(f"still waiting ({exc})", file=sys.stderr)
        if artifact is not None:
            line = progress_line(artifact)
            if line != shown:
                print(line, file=sys.stderr, flush=True)
                shown = line
            if artifact.get("status") not in WAITING_STATUSES:
                return artifact
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval, remaining))


def verdict_exit_code(artifact: dict, fail_on: str | None) -> int:
    if fail_on is None:
        return EXIT_OK
    if artifact.get("status") == "failed":
        return EXIT_FLAGGED
    flag = artifact.get("drift_flag") or ""
    return EXIT_FLAGGED if FLAG_SEVERITY.get(flag, -1) >= FLAG_SEVERITY[fail_on] else EXIT_OK


def write_outputs(args: argparse.Namespace, url: str, flag: str) -> None:
    """The artifact's page and its flag, for the CI steps that come after (see the module docstring)."""
    if args.github_output:
        with open(args.github_output, "a", encoding="utf-8") as out:
            out.write(f"artifact-url={url}\nflag={flag}\n")
    if args.dotenv:
        Path(args.dotenv).write_text(f"DRIFTBOARD_ARTIFACT_URL={url}\nDRIFTBOARD_FLAG={flag}\n", encoding="utf-8")


def submit(args: argparse.Namespace) -> int:
    server = Server(args.server.rstrip("/"), args.token)
    fields = {"family": args.family, "commit": args.commit, "branch": args.branch, "pr_url": args.pr_url}
    with weights_file(Path(args.weights)) as path:
        status, artifact = upload(server, MultipartUpload(fields, "weights", path))
    print(artifact["url"], flush=True)
    if status == 200:
        print(f"already registered as v{artifact['version']} ({artifact['status']})", file=sys.stderr)
    final = wait_for_verdict(server, artifact["id"], args.timeout, args.poll_interval) if args.wait else None
    write_outputs(args, artifact["url"], (final.get("drift_flag") or "none") if final else "pending")
    if not args.wait:
        return EXIT_OK
    if final is None:
        print(f"timed out after {args.timeout:g} s; the artifact is still being scored", file=sys.stderr)
        return EXIT_TIMEOUT
    print(f"drift flag: {final.get('drift_flag') or 'none'} (status {final.get('status')})", flush=True)
    return verdict_exit_code(final, args.fail_on)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m driftboard.client", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("submit", help="register weights, optionally wait for the verdict")
    sub.add_argument("--server", default=os.environ.get("DRIFTBOARD_URL"), help="default $DRIFTBOARD_URL")
    sub.add_argument("--token", default=os.environ.get("DRIFTBOARD_TOKEN"), help="default $DRIFTBOARD_TOKEN")
    sub.add_argument("--family", required=True)
    sub.add_argument("--weights", required=True, help=".safetensors, .bin, .tar, .zip or a folder")
    sub.add_argument("--commit", required=True)
    sub.add_argument("--branch", default="")
    sub.add_argument("--pr-url", default="")
    sub.add_argument("--wait", action="store_true", help="poll until the verdict")
    sub.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    sub.add_argument("--poll-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    sub.add_argument("--fail-on", choices=("red", "amber"), help="exit 1 when the flag is this bad (needs --wait)")
    sub.add_argument("--github-output", help="a GitHub Actions output file ($GITHUB_OUTPUT)")
    sub.add_argument("--dotenv", help="a GitLab dotenv report to write")
    return root


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if not args.server or not args.token:
        cli.error("--server and --token (or $DRIFTBOARD_URL and $DRIFTBOARD_TOKEN) are required")
    if args.fail_on and not args.wait:
        cli.error("--fail-on needs --wait")
    if not Path(args.weights).exists():
        cli.error(f"--weights {args.weights!r} does not exist")
    try:
        return submit(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
