"""`manage.py serve` restarts a worker that dies, keeps the web server up meanwhile, and one Ctrl-C
stops every process it started."""

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import psutil
import pytest

from driftboard.supervisor import Child, Supervisor
from tests.conftest import ROOT, free_port, wait_for, worker_env


def web_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError as error:
        return error.code == 503  # answering, whatever it thinks of the broker
    except OSError:
        return False


def worker_pid(serve: subprocess.Popen) -> int | None:
    for child in psutil.Process(serve.pid).children():
        try:
            if "celery" in child.cmdline():
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


def descendants(serve: subprocess.Popen) -> set[int]:
    """Every process of serve's children's groups (each child leads its own)."""
    leaders = {child.pid for child in psutil.Process(serve.pid).children()}
    return {process.pid for process in psutil.process_iter() if safe_pgid(process.pid) in leaders}


def safe_pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.fixture
def serve(transactional_db, settings, tmp_path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {**worker_env(settings), "DRIFTBOARD_VAR_DIR": str(tmp_path / "var"), "CELERY_BROKER_URL": "filesystem://"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield process, port, tmp_path / "serve.log"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.mark.worker
def test_it_restarts_a_killed_worker_and_keeps_the_web_server_up(serve):
    process, port, log = serve
    first = wait_for(lambda: worker_pid(process), timeout=60, message="the worker to start")
    wait_for(lambda: web_answers(port), timeout=60, message="the web server to answer")

    os.killpg(first, signal.SIGKILL)

    wait_for(lambda: "worker exited with code -9; restarting in 1s" in log.read_text(), timeout=30, message="the log")
    wait_for(lambda: worker_pid(process) not in (None, first), timeout=30, message="a new worker")
    assert web_answers(port)
    assert process.poll() is None


@pytest.mark.worker
def test_it_stops_every_process_group_at_once_on_ctrl_c(serve):
    process, port, _log = serve
    wait_for(lambda: worker_pid(process), timeout=60, message="the worker to start")
    wait_for(lambda: web_answers(port), timeout=60, message="the web server to answer")
    started = descendants(process)

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=30) == 0
    assert [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"] == []


def exiting(code: int):
    return lambda: subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"], start_new_session=True)


def test_it_backs_off_1_2_4_seconds_up_to_the_cap_and_starts_over_after_a_healthy_run():
    lines: list[str] = []
    child = Child("worker", exiting(3))
    supervisor = Supervisor([child], log=lines.append, max_backoff_seconds=4, healthy_after_seconds=60)
    child.launch()
    for healthy in (False, False, False, False, True):
        child.process.wait()
        if healthy:
            child.started_at -= 60
        assert supervisor.tick() is None
        child.restart_at = 0  # due now: the next tick starts it again
        assert supervisor.tick() is None
    child.process.wait()

    assert [line.rpartition(" ")[2] for line in lines] == ["1s", "2s", "4s", "4s", "1s"]
    assert lines[0] == "worker exited with code 3; restarting in 1s"


def test_it_stops_everything_when_the_web_server_exits():
    lines: list[str] = []
    worker = Child("worker", lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                                      start_new_session=True))  # fmt: skip
    web = Child("web server", exiting(1), restart=False)

    assert Supervisor([worker, web], log=lines.append).run(poll_seconds=0.05) == 1
    assert lines == ["web server exited with code 1; stopping everything"]
    assert worker.process.returncode == -signal.SIGTERM
