"""A run queued on Redis survives Redis restarting and forgetting it: a private redis-server, really restarted."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from driftboard.celery import app
from driftboard.queues import queue_depth
from evals.models import EvalRun
from evals.services import eval_runs_sweep
from registry.models import Artifact
from tests.conftest import free_port, wait_for

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


class PrivateRedis:
    """A redis-server of this test alone, on its own port, keeping nothing on disk across restarts."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "PrivateRedis":
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=10, interval=0.05, message="redis-server to listen")
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_redis(tmp_path):
    redis = PrivateRedis(tmp_path).start()
    yield redis
    redis.stop()


@pytest.fixture
def broker_is_private_redis(settings, private_redis):
    """This process's Celery app and the workers it starts both use the private redis-server."""
    saved = (app.conf.broker_write_url, app.conf.broker_read_url)
    settings.CELERY_BROKER_URL = private_redis.url
    app.conf.broker_write_url = app.conf.broker_read_url = private_redis.url
    app._pool = app.amqp._producer_pool = None
    yield private_redis
    app.conf.broker_write_url, app.conf.broker_read_url = saved
    app._pool = app.amqp._producer_pool = None


def test_a_queued_run_is_scored_after_redis_restarts_and_loses_its_message(
    celery_worker_factory,
    broker_is_private_redis,
    settings,
    api_client,
    demo_family,  # noqa: F811
    demo_imports,  # noqa: F811
):
    body = {"family": demo_family.slug, "commit": "4" * 40, "path": str(demo_imports["improved"])}
    response = api_client.post("/api/v1/artifacts/", body, format="json")
    assert response.status_code == 202
    run = EvalRun.objects.get(artifact_id=response.json()["id"])
    assert run.status == EvalRun.Status.QUEUED and queue_depth("scoring") == 1

    broker_is_private_redis.restart()
    assert queue_depth("scoring") == 0  # the message is gone, the run row still says queued

    celery_worker_factory()
    time.sleep(settings.DRIFTBOARD_RUN_LEASE_SECONDS + 0.5)  # the message counts as lost once older than a lease
    assert eval_runs_sweep()["resent"] == 1
    wait_for(
        lambda: Artifact.objects.get(pk=run.artifact_id).status in {"promoted", "held", "halted", "scored"},
        timeout=180,
        message="the re-sent run to be scored",
    )
    run.refresh_from_db()
    assert (run.status, run.attempts) == (EvalRun.Status.SUCCEEDED, 1)
