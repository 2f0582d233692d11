"""The embedded broker (`filesystem://`) never hands out half a message, never hands one out twice, and
sets an undecodable message aside instead of letting it kill the worker."""

import json
import logging
from pathlib import Path

import pytest
from django.conf import settings

from driftboard.celery import app
from driftboard.embedded_broker import Channel
from evals.tasks import sweep_runs
from tests.conftest import wait_for
from tests.hardening.broker_stress import EMBEDDED, STOCK, connection, stress, stress_queue

on_the_embedded_broker = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("filesystem://"), reason="the broker is a server here"
)


def test_it_delivers_every_message_exactly_once_to_consumers_under_cpu_contention(tmp_path):
    result = stress(tmp_path, transport=EMBEDDED)

    assert result.consumer_deaths == 0, result.consumer_errors
    assert (result.lost, result.duplicated, result.broken_files) == (0, 0, 0)
    assert result.sent == len(result.received) == 2040


def test_it_shows_that_kombus_own_transport_fails_the_same_harness(tmp_path):
    result = stress(tmp_path, transport=STOCK)

    assert result.consumer_deaths > 0 or result.lost or result.duplicated
    assert any("JSONDecodeError" in error for error in result.consumer_errors)


def test_it_sets_an_undecodable_message_aside_and_delivers_the_next(tmp_path, caplog):
    for sub in ("queue", "processed", "control"):
        (tmp_path / sub).mkdir()
    with connection(EMBEDDED, str(tmp_path)) as conn:
        conn.Producer().publish({"id": "before"}, exchange="stress", routing_key="stress", declare=[stress_queue()])
        (tmp_path / "queue" / "0_garbage.stress.msg").write_bytes(b'{"body": "cut sh')
        conn.Producer().publish({"id": "after"}, exchange="stress", routing_key="stress", declare=[stress_queue()])
        received: list[str] = []

        def on_message(body: dict, message) -> None:
            received.append(body["id"])
            message.ack()

        with conn.Consumer([stress_queue()], callbacks=[on_message]):
            with caplog.at_level(logging.ERROR, logger="driftboard.embedded_broker"):
                while len(received) < 2:
                    conn.drain_events(timeout=5)

    assert sorted(received) == ["after", "before"]
    assert [path.name for path in (tmp_path / "broken").iterdir()] == ["0_garbage.stress.msg"]
    assert "could not be decoded" in caplog.text and "JSONDecodeError" in caplog.text
    assert list((tmp_path / "queue").iterdir()) == []


def test_it_rewrites_exchange_tables_whole_keeping_every_binding(tmp_path):
    (tmp_path / "queue").mkdir()
    with connection(EMBEDDED, str(tmp_path)) as conn:
        conn.default_channel.exchange_declare("bindings", type="direct")
        for name in ("scoring", "publish", "offpeak"):
            conn.default_channel.queue_declare(name)
            conn.default_channel.queue_bind(name, exchange="bindings", routing_key=name)
        conn.default_channel.queue_delete("offpeak")

    table = json.loads((tmp_path / "control" / "bindings.exchange").read_text())
    assert sorted(row[2] for row in table) == ["publish", "scoring"]
    assert [path.name for path in (tmp_path / "control").iterdir() if path.name.endswith(".tmp")] == []


@on_the_embedded_broker
def test_it_is_what_filesystem_urls_mean_in_driftboard():
    with app.connection_for_write() as conn:
        assert isinstance(conn.default_channel, Channel)


@on_the_embedded_broker
@pytest.mark.worker
def test_it_keeps_a_real_worker_alive_past_an_undecodable_message(celery_worker_factory):
    worker = celery_worker_factory()
    queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    (queue / "0_garbage.publish.msg").write_bytes(b"")
    sweep_runs.delay()

    wait_for(lambda: "sweep_runs" in worker.log_path.read_text() and "succeeded" in worker.log_path.read_text())
    assert worker.process.poll() is None
    assert (Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["broken_folder"]) / "0_garbage.publish.msg").exists()
    assert "could not be decoded" in worker.log_path.read_text()
