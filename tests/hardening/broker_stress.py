"""A file-system broker transport under stress: producers, a beat-like periodic sender and consumers,
each a process of its own, beside busy-loop processes that keep every core taken.

Every `slow_every`-th message a producer writes lands in two halves with a pause between (the
producer preempted mid-message, as a loaded machine does it), so a reader that can see a message
before it is whole does see one. Used by tests/hardening/test_embedded_broker.py and bench/chaos.py;
a role runs as `python -m tests.hardening.broker_stress ROLE JSON`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue
from kombu.utils.imports import symbol_by_name

ROOT = Path(__file__).resolve().parents[2]
STOCK = "kombu.transport.filesystem:Transport"
EMBEDDED = "driftboard.embedded_broker:Transport"


def stress_queue() -> Queue:
    return Queue("stress", Exchange("stress", type="direct"), routing_key="stress")


def connection(transport: str, folder: str) -> Connection:
    base = Path(folder)
    options = {
        "data_folder_in": str(base / "queue"),
        "data_folder_out": str(base / "queue"),
        "processed_folder": str(base / "processed"),
        "control_folder": str(base / "control"),
        "broken_folder": str(base / "broken"),
        "store_processed": False,
        "polling_interval": 0.05,  # as driftboard/settings.py polls
    }
    return Connection(transport=transport, transport_options=options)


class HalfWrittenFile:
    """A file opened for writing whose writes land in two halves, `pause` seconds apart."""

    def __init__(self, file: Any, pause: float):
        self.file = file
        self.pause = pause

    def write(self, data: bytes) -> int:
        half = len(data) // 2
        self.file.write(data[:half])
        self.file.flush()
        time.sleep(self.pause)
        return half + self.file.write(data[half:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def __enter__(self) -> HalfWrittenFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.file.close()


def preempt_writes(transport: str, every: int, pause: float) -> None:
    """Every `every`-th file the transport's module opens for writing is written in two halves (0: none)."""
    if every <= 0:
        return
    module = sys.modules[symbol_by_name(transport).__module__]
    opened = 0

    def open_preempted(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        file = open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return file
        opened += 1
        return HalfWrittenFile(file, pause) if opened % every == 0 else file

    module.open = open_preempted


def produce(transport: str, folder: str, name: str, count: int, every_seconds: float, slow_every: int, pause: float):
    preempt_writes(transport, slow_every, pause)
    with connection(transport, folder) as conn:
        producer = conn.Producer()
        for index in range(count):
            producer.publish(
                {"id": f"{name}-{index}"}, exchange="stress", routing_key="stress", declare=[stress_queue()]
            )
            if every_seconds:
                time.sleep(every_seconds)


def consume(transport: str, folder: str, out: str) -> None:
    with connection(transport, folder) as conn, open(out, "a", buffering=1) as received:

        def on_message(body: dict, message: Any) -> None:
            received.write(body["id"] + "\n")
            message.ack()

        with conn.Consumer([stress_queue()], callbacks=[on_message], accept=["json"]):
            while True:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass


def burn() -> None:
    while True:
        pass


ROLES = {"produce": produce, "consume": consume, "burn": burn}


@dataclass
class StressResult:
    sent: int
    received: list[str]
    consumer_deaths: int
    consumer_errors: list[str] = field(default_factory=list)
    broken_files: int = 0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.sent - len(set(self.received))

    @property
    def duplicated(self) -> int:
        return len(self.received) - len(set(self.received))


def start(role: str, log: Path, **arguments: Any) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.hardening.broker_stress", role, json.dumps(arguments)]
    with log.open("w") as output:
        return subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def received_ids(outputs: list[Path]) -> list[str]:
    return [line for out in outputs if out.exists() for line in out.read_text().splitlines() if line]


def stress(
    folder: Path,
    *,
    transport: str,
    producers: int = 4,
    per_producer: int = 500,
    beat_messages: int = 40,
    beat_every_seconds: float = 0.1,
    consumers: int = 2,
    burners: int | None = None,
    slow_every: int = 10,
    pause: float = 0.02,
    quiet_seconds: float = 3.0,
) -> StressResult:
    """Send `producers × per_producer + beat_messages` messages and count what the consumers got."""
    for sub in ("queue", "processed", "control", "broken", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    logs, began = folder / "logs", time.monotonic()
    common = {"transport": transport, "folder": str(folder)}
    side = [start("burn", logs / f"burn{index}.log") for index in range(burners or os.cpu_count() or 2)]
    outputs = [logs / f"received{index}.txt" for index in range(consumers)]
    readers = [
        start("consume", logs / f"consume{index}.log", out=str(out), **common) for index, out in enumerate(outputs)
    ]
    senders = [
        start("produce", logs / f"produce{index}.log", name=f"p{index}", count=per_producer, every_seconds=0.0,
              slow_every=slow_every, pause=pause, **common)
        for index in range(producers)
    ]  # fmt: skip
    senders.append(
        start("produce", logs / "beat.log", name="beat", count=beat_messages, every_seconds=beat_every_seconds,
              slow_every=slow_every, pause=pause, **common)
    )  # fmt: skip
    sent = producers * per_producer + beat_messages
    try:
        for sender in senders:
            sender.wait()
        drain(outputs, readers, sent, quiet_seconds)
        deaths = sum(reader.poll() is not None for reader in readers)
    finally:
        for process in [*readers, *side, *senders]:
            stop(process)
    errors = [log.read_text()[-2000:] for log in sorted(logs.glob("consume*.log")) if log.read_text().strip()]
    return StressResult(
        sent=sent,
        received=received_ids(outputs),
        consumer_deaths=deaths,
        consumer_errors=errors,
        broken_files=len(list((folder / "broken").iterdir())),
        seconds=time.monotonic() - began,
    )


def drain(outputs: list[Path], readers: list[subprocess.Popen], sent: int, quiet_seconds: float) -> None:
    """Wait until every message arrived, every consumer died, or nothing arrived for `quiet_seconds`."""
    count, quiet_since = -1, time.monotonic()
    while any(reader.poll() is None for reader in readers):
        now_count = len(received_ids(outputs))
        if now_count >= sent:
            return
        if now_count != count:
            count, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since > quiet_seconds:
            return
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


if __name__ == "__main__":
    ROLES[sys.argv[1]](**json.loads(sys.argv[2]))
