"""`manage.py serve`: the web server and a Celery worker together; a worker that dies is restarted, one
Ctrl-C stops both."""

import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from driftboard import links
from driftboard.queue_names import QUEUES
from driftboard.supervisor import Child, Supervisor
from evals.services.demo import demo_autoresearch, demo_load


def stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the web server and a Celery worker (all queues, with the sweeper, restarted if it dies) until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--demo", action="store_true", help="Build and load the demo family in the background.")
        parser.add_argument("--concurrency", type=int, default=1, help="Worker processes.")

    def handle(self, *args, addr: str, demo: bool, concurrency: int, **options) -> None:
        signal.signal(signal.SIGTERM, stop_on_sigterm)
        self.ensure_admin(addr)
        os.environ.update(self.link_env(addr))  # read by the web server and worker started below
        supervisor = Supervisor(
            [
                Child("worker", lambda: self.start_worker(concurrency)),
                Child("web server", lambda: self.start_web(addr), restart=False),
            ],
            log=lambda line: self.stderr.write(self.style.WARNING(line)),
        )
        self.stdout.write(self.style.SUCCESS(f"\nDriftboard is running at http://{addr}/  (Ctrl-C stops it)\n"))
        if demo:
            threading.Thread(target=self.load_demo, args=(addr,), daemon=True).start()
        if code := supervisor.run():
            sys.exit(code)

    def ensure_admin(self, addr: str) -> None:
        users = get_user_model().objects
        if users.filter(username="admin").exists():
            self.stdout.write(
                f"Log in at http://{addr}/ as admin (the password was printed on the first run; "
                "`python manage.py changepassword admin` sets a new one)."
            )
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(
            self.style.WARNING(f"Log in at http://{addr}/ as admin with password {password}  (shown only this once)")
        )

    def link_env(self, addr: str) -> dict[str, str]:
        """Without DRIFTBOARD_PUBLIC_URL, what the web server and worker link to outside a request (pull
        requests, alerts) is where this server listens."""
        return {} if settings.DRIFTBOARD_PUBLIC_URL else {"DRIFTBOARD_SERVE_URL": links.serve_url(addr)}

    def start_worker(self, concurrency: int) -> subprocess.Popen:
        schedule = Path(settings.VAR_DIR) / "celerybeat-schedule"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "driftboard",
            "worker",
            "--beat",
            "--schedule",
            str(schedule),
            "-Q",
            ",".join(QUEUES),
            "-c",
            str(concurrency),
            "--loglevel",
            "INFO",
        ]
        return subprocess.Popen(command, env={**os.environ, "DRIFTBOARD_EMBEDDED": "1"}, start_new_session=True)

    def start_web(self, addr: str) -> subprocess.Popen:
        command = [sys.executable, "manage.py", "runserver", addr, "--noreload"]
        return subprocess.Popen(command, env={**os.environ, "DRIFTBOARD_EMBEDDED": "1"}, start_new_session=True)

    def load_demo(self, addr: str) -> None:
        outdir = Path(settings.VAR_DIR) / "demo"
        try:
            demo_load(outdir, log=lambda line: self.stdout.write(f"[demo] {line}"))
            self.stdout.write(self.style.SUCCESS("[demo] Demo family loaded: open the dashboard."))
            self.stdout.write("[demo] Starting the autoresearch loop: watch /experiments/demo-autoresearch/ fill up.")
            token, _ = Token.objects.get_or_create(user=get_user_model().objects.get(username="admin"))
            demo_autoresearch(
                model_dir=outdir / "base",
                base_url=f"http://{addr}",
                token=token.key,
                log=lambda line: self.stdout.write(f"[demo] {line}"),
            )
            self.stdout.write(self.style.SUCCESS("[demo] Autoresearch loop finished."))
        except Exception as exc:  # the servers keep running; say what went wrong
            self.stderr.write(f"[demo] Could not load the demo: {exc}")
