"""Shared fixtures: users and API clients, an isolated artifact root, the small demo models (built once
per session), and a real Celery worker process on the configured broker and database."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from driftboard.queue_names import QUEUES
from evals.services import dataset_import
from evals.services.pipeline import family_create
from tests.factories import UserFactory
from tests.publishing.forge import run_tasks_eagerly, running_forge

# Debian's Chromium, driven by Playwright's sync API. One browser for the whole session: a second
# sync_playwright() in the same thread, while the first runs, is refused, so every module that drives
# Chromium (e2e, dashboard, demo) shares this fixture rather than defining its own.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests' judges are local servers on loopback, which judges reach only when it is listed.
TEST_JUDGE_HOSTS = "127.0.0.1"
os.environ.setdefault("DRIFTBOARD_JUDGE_HOSTS", TEST_JUDGE_HOSTS)


@pytest.fixture(scope="session")
def session_artifact_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def import_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("imports")


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counts (login failures, API writes per user id) never carry over from another test."""
    cache.clear()


@pytest.fixture(autouse=True)
def _isolated_storage(settings, session_artifact_root, import_root):
    settings.DRIFTBOARD_ARTIFACT_ROOT = session_artifact_root
    settings.DRIFTBOARD_IMPORT_ROOTS = [import_root.resolve()]
    settings.DRIFTBOARD_ALERT_WEBHOOK_URL = ""
    settings.DRIFTBOARD_JUDGE_HOSTS = [TEST_JUDGE_HOSTS]


@pytest.fixture
def user(db):
    return UserFactory(username="reader")


@pytest.fixture
def staff_user(db):
    return UserFactory(username="staff", is_staff=True)


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api_client(user) -> APIClient:
    return token_client(user)


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    return token_client(staff_user)


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory):
    """Base, improved and drifted GPT-2 folders plus a golden JSONL, trained once per session."""
    from evals.scoring.demo_models import build_demo_models

    return build_demo_models(tmp_path_factory.mktemp("demo-models"), preset="test", log=lambda _line: None)


def worker_database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class WorkerProcess:
    """A real `celery worker` process; start() waits until it says it is ready."""

    def __init__(self, log_path: Path, env: dict[str, str], queues: tuple[str, ...] = QUEUES):
        self.log_path = log_path
        self.env = env
        self.queues = queues
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "WorkerProcess":
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "driftboard",
            "worker",
            "-Q",
            ",".join(self.queues),
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test{time.monotonic_ns()}@%h",
            "--loglevel",
            "INFO",
        ]
        self.log = self.log_path.open("a")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log_path.read_text(errors="replace"):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"The worker did not start:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker vanishes mid-task."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()

    def terminate(self) -> None:
        """SIGTERM: a warm shutdown (`wait_stopped` waits for it, then kills)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)

    def wait_stopped(self, timeout: float = 5) -> None:
        if self.process and self.process.poll() is None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def purge_broker() -> None:
    from driftboard.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in QUEUES:
            try:
                channel.queue_purge(queue)
            except Exception:  # a queue that was never declared has nothing to purge
                pass


@pytest.fixture
def celery_worker_factory(transactional_db, settings, session_artifact_root, import_root, tmp_path):
    """Start real worker processes sharing this test's database, broker and artifact root."""
    settings.DRIFTBOARD_RUN_LEASE_SECONDS = 4
    purge_broker()
    workers: list[WorkerProcess] = []

    def start(queues: tuple[str, ...] = QUEUES, **extra_env: str) -> WorkerProcess:
        log = tmp_path / f"worker{len(workers)}.log"
        worker = WorkerProcess(log, {**worker_env(settings), **extra_env}, queues).start()
        workers.append(worker)
        return worker

    yield start
    # All shut down at once; the test is over, so a worker still finishing its warm shutdown after 2 s
    # (a beat tick, a broker poll) is killed rather than waited for.
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait_stopped(timeout=2)


def worker_env(settings) -> dict[str, str]:
    """The worker sees this test's settings as they are when it starts."""
    return {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DRIFTBOARD_ARTIFACT_ROOT": str(settings.DRIFTBOARD_ARTIFACT_ROOT),
        "DRIFTBOARD_IMPORT_ROOTS": ",".join(str(p) for p in settings.DRIFTBOARD_IMPORT_ROOTS),
        "DRIFTBOARD_RUN_LEASE_SECONDS": "4",
        "DRIFTBOARD_TESTING": "1",
        "DRIFTBOARD_ALERT_WEBHOOK_URL": settings.DRIFTBOARD_ALERT_WEBHOOK_URL,
        "DRIFTBOARD_JUDGE_HOSTS": ",".join(settings.DRIFTBOARD_JUDGE_HOSTS),
        "DRIFTBOARD_GITHUB_API_URL": settings.DRIFTBOARD_GITHUB_API_URL,
        "DRIFTBOARD_GITHUB_TOKEN": settings.DRIFTBOARD_GITHUB_TOKEN,
        "DRIFTBOARD_GITLAB_URL": settings.DRIFTBOARD_GITLAB_URL,
        "DRIFTBOARD_GITLAB_TOKEN": settings.DRIFTBOARD_GITLAB_TOKEN,
        "DRIFTBOARD_PUBLIC_URL": settings.DRIFTBOARD_PUBLIC_URL,
        "OMP_NUM_THREADS": "1",
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, for a private server of a test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float = 120, interval: float = 0.25, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {message}")


class broker_unreachable:
    """Point this process's Celery app at a port where no broker listens, then restore it."""

    DEAD = "redis://127.0.0.1:1/0"

    def __enter__(self):
        from driftboard.celery import app

        self.app = app
        self.saved = (app.conf.broker_write_url, app.conf.broker_read_url)
        app.conf.broker_write_url = app.conf.broker_read_url = self.DEAD
        self.reset_pools()
        return self

    def reset_pools(self) -> None:
        self.app._pool = None
        self.app.amqp._producer_pool = None

    def __exit__(self, *exc_info):
        self.app.conf.broker_write_url, self.app.conf.broker_read_url = self.saved
        self.reset_pools()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Tests log users in all the time; the production hasher's key stretching would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def forge(settings):
    """A local HTTP server speaking GitHub's and GitLab's API, with the settings pointed at it."""
    settings.DRIFTBOARD_GITHUB_URL = "https://github.com"  # the web host of the recorded PR URLs
    with running_forge(settings) as server:
        yield server


@pytest.fixture
def eager(settings):
    run_tasks_eagerly(settings)


class AlertReceiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def alert_receiver():
    AlertReceiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlertReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", AlertReceiver.received
    server.shutdown()


@pytest.fixture
def demo_imports(demo_build, import_root) -> dict[str, Path]:
    """The demo model folders copied under the import root, so they can be registered by path."""
    paths = {}
    for name in ("base", "improved", "drifted"):
        target = import_root / f"demo-{name}"
        if not target.exists():
            shutil.copytree(getattr(demo_build, name), target)
        paths[name] = target
    return paths


@pytest.fixture
def demo_family(transactional_db, demo_build):
    dataset_import(name="demo-golden", filename="golden.jsonl", source=demo_build.golden)
    return family_create(slug="demo", kind="causal-lm", base_path=str(demo_build.base), datasets=["demo-golden"])
