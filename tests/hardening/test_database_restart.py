"""A run being scored survives PostgreSQL restarting under its worker: a private PostgreSQL cluster,
really stopped mid-run and started again. The worker keeps scoring, waits for the database with its
results in memory, and saves them once it is back: one attempt, nothing scored twice, nothing lost."""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, transaction

from driftboard.db import database_retry
from evals.models import EvalRun, MetricSnapshot
from evals.services import dataset_import
from evals.services.pipeline import family_create
from registry.models import Artifact
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.worker


def postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    found = candidates[0] if candidates else shutil.which("initdb")
    return Path(found).parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of this test alone: its own data folder, port and socket folder.
    As root, the server runs as the `postgres` user, which PostgreSQL insists on."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="driftboard-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *command: str) -> None:
        subprocess.run([*self.as_postgres, *command], check=True, capture_output=True, timeout=120)

    def init(self) -> "PrivatePostgres":
        self.folder.chmod(0o755)
        if self.as_postgres:
            shutil.chown(self.folder, "postgres")
        self.run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        return self.start()

    def start(self) -> "PrivatePostgres":
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        return self

    def stop(self) -> None:
        self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> None:
        admin = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        admin.close()

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_database(transactional_db):
    """This process and the workers it starts use a fresh, migrated database on a private cluster.

    The connection's settings are the very dict of `settings.DATABASES`, which the workers are
    configured from, so updating it points both at the private cluster."""
    if connection.vendor != "postgresql":
        pytest.skip("the database is not PostgreSQL (set DATABASE_URL, as the second CI pass does)")
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries are not installed")
    cluster = PrivatePostgres(bindir).init()
    cluster.create_database("driftboard_faults")
    saved = dict(connection.settings_dict)
    connection.close()
    private = {"HOST": "127.0.0.1", "PORT": str(cluster.port), "NAME": "driftboard_faults", "USER": "postgres"}
    connection.settings_dict.update(private, PASSWORD="")
    call_command("migrate", verbosity=0, interactive=False)
    yield cluster
    connection.close()
    connection.settings_dict.update(saved)
    cluster.remove()


@pytest.fixture
def long_run_family(private_database, demo_build, tmp_path):
    """The demo family on a golden set large enough that scoring lasts several seconds."""
    lines = demo_build.golden.read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    golden = tmp_path / "golden-long.jsonl"
    with golden.open("w") as out:
        for copy in range(4):
            for row in rows:
                out.write(json.dumps({**row, "id": f"{row['id']}-{copy}", "text": f"{row['text']} ({copy})"}) + "\n")
    dataset_import(name="long-golden", filename=golden.name, source=golden)
    return family_create(slug="demo", kind="causal-lm", base_path=str(demo_build.base), datasets=["long-golden"])


def run_row(pk: int) -> EvalRun:
    return EvalRun.objects.get(pk=pk)


def test_a_run_survives_postgresql_restarting_while_it_is_scored(
    private_database,
    long_run_family,
    celery_worker_factory,
    api_client,
    demo_imports,  # noqa: F811
):
    body = {"family": long_run_family.slug, "commit": "5" * 40, "path": str(demo_imports["improved"])}
    response = api_client.post("/api/v1/artifacts/", body, format="json")
    assert response.status_code == 202, response.content
    run = EvalRun.objects.get(artifact_id=response.json()["id"])
    total = run.samples_total

    worker = celery_worker_factory()
    mid_run = wait_for(
        lambda: (row := run_row(run.pk)).status == EvalRun.Status.RUNNING and 0 < row.samples_done < total and row,
        timeout=180,
        interval=0.05,
        message="the worker to report progress part-way through the run",
    )

    connection.close()
    private_database.stop()
    time.sleep(3.0)  # the worker writes progress every second: it meets the outage at least twice
    private_database.start()

    wait_for(
        lambda: run_row(run.pk).status in {EvalRun.Status.SUCCEEDED, EvalRun.Status.FAILED},
        timeout=120,
        message="the run to finish after the restart",
    )
    run.refresh_from_db()
    assert mid_run.samples_done < total
    assert "unreachable" in worker.log_path.read_text()  # it met the outage, and rode it out
    assert (run.status, run.attempts, run.samples_done, run.error) == (EvalRun.Status.SUCCEEDED, 1, total, "")
    snapshot = MetricSnapshot.objects.get(artifact_id=run.artifact_id, metric="bits_per_byte")
    assert snapshot.complete and snapshot.n == total
    artifact = Artifact.objects.get(pk=run.artifact_id)
    assert artifact.status == Artifact.Status.PROMOTED  # the family's first artifact becomes its baseline


@pytest.mark.parametrize("in_transaction", [False, True])
def test_an_error_from_a_database_that_is_up_is_raised_at_once(transactional_db, in_transaction):
    calls = []

    def bad_statement():
        calls.append(1)
        raise OperationalError("a statement error, not an outage")

    with pytest.raises(OperationalError, match="not an outage"):
        with transaction.atomic() if in_transaction else contextlib.nullcontext():
            database_retry(bad_statement, what="testing", timeout=30)
    assert calls == [1]  # tried once: no waiting for an outage that is not one
