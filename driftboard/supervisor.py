"""Child processes kept running for `manage.py serve`: one that exits is started again after a back-off
(1 s, 2 s, 4 s … capped), with a line saying so, and all of them are stopped together.

Each child leads its own process group (so a Ctrl-C at the terminal reaches only this process, which
then stops every group at once), and a group is killed whole: a worker's pool processes never outlive it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Child:
    name: str
    start: Callable[[], subprocess.Popen]
    # A child that is not restarted ends the whole supervision when it exits (the web server: a port
    # already taken would only fail again).
    restart: bool = True
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    quick_exits: int = 0

    def launch(self) -> None:
        self.process = self.start()
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    def __init__(
        self,
        children: list[Child],
        *,
        log: Callable[[str], None],
        max_backoff_seconds: float = 30.0,
        healthy_after_seconds: float = 60.0,
    ):
        self.children = children
        self.log = log
        self.max_backoff_seconds = max_backoff_seconds
        self.healthy_after_seconds = healthy_after_seconds

    def run(self, poll_seconds: float = 0.5) -> int:
        """Start every child and keep them running; the exit code of a child that ends it all, else 0."""
        for child in self.children:
            child.launch()
        try:
            while (code := self.tick()) is None:
                time.sleep(poll_seconds)
            return code
        except KeyboardInterrupt:
            return 0
        finally:
            self.stop()

    def tick(self) -> int | None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.launch()
                continue
            code = child.process.poll()
            if code is None:
                continue
            if not child.restart:
                self.log(f"{child.name} exited with code {code}; stopping everything")
                return code or 1
            self.schedule_restart(child, code, now)
        return None

    def schedule_restart(self, child: Child, code: int, now: float) -> None:
        kill_group(child.process, signal.SIGKILL)  # its pool processes, if the leader alone died
        stayed_up = now - child.started_at >= self.healthy_after_seconds
        child.quick_exits = 0 if stayed_up else child.quick_exits + 1
        delay = min(self.max_backoff_seconds, 2.0 ** max(0, child.quick_exits - 1))
        child.restart_at = now + delay
        self.log(f"{child.name} exited with code {code}; restarting in {delay:g}s")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every group at once, then SIGKILL whatever is left when `timeout` is up."""
        processes = [child.process for child in self.children if child.process is not None]
        for process in processes:
            kill_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for process in processes:
            kill_group(process, signal.SIGKILL)
            process.wait()


def kill_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
