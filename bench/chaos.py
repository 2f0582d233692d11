"""Chaos: scoring runs survive workers that are SIGKILLed again and again.

Run: python bench/chaos.py [--duration 300] [--kill-every 20] [--artifacts 30] [--families 3]
                           [--broker redis://127.0.0.1:6379/15] [--workdir DIR] [--chunk N]

It builds the small demo models (preset "test", once per work folder), freezes their golden set,
creates the families and registers the artifacts — each a copy of a demo model with its weights
nudged by its own seed, so no two share cached results — through the real pipeline, on a fresh
SQLite file (or DATABASE_URL) and the Redis broker given. Two real `celery worker` processes score
them; every `--kill-every` seconds (±25 %) one worker's whole process group is SIGKILLed (the one
holding a running run, when one does) and a new one started in its place, for `--duration`
seconds or until every run is done. The bench process plays beat: it runs the sweeper every two
seconds (the run lease is 30 s here: long enough for a model to load on a busy CPU). A
DATABASE_URL given is emptied first.

Reported: runs that finished (exactly once: one succeeded row each, one metric snapshot per
artifact × dataset × metric, one verdict per artifact × metric), and the samples each kill cost.
A kill's cost is the killed run's progress at the moment of the kill (`samples_done`) minus the
per-sample results already saved for its weights: what the retry has to score again. Progress is
written after each batch, so a batch being scored when the kill came is not counted.

The broker database is purged first: give one that nothing else uses.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LEASE_SECONDS = 30
SWEEP_EVERY_SECONDS = 2.0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of killing (default 300)")
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds between kills (default 20)")
    parser.add_argument("--artifacts", type=int, default=30)
    parser.add_argument("--families", type=int, default=3)
    parser.add_argument("--broker", default=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--workdir", type=Path, default=None, help="kept between runs (the demo models are reused)")
    parser.add_argument("--chunk", type=int, default=None, help="DRIFTBOARD_RESULT_CHUNK_SAMPLES for the workers")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def configure(args: argparse.Namespace) -> Path:
    """Point Django at a private var folder, database, artifact root and import root."""
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="driftboard-chaos-"))).resolve()
    var = workdir / "var"
    if var.exists():
        shutil.rmtree(var)
    (workdir / "models").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "driftboard.settings",
            "DRIFTBOARD_EMBEDDED": "1",
            "DRIFTBOARD_VAR_DIR": str(var),
            "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{var / 'chaos.sqlite3'}",
            "CELERY_BROKER_URL": args.broker,
            "DRIFTBOARD_ARTIFACT_ROOT": str(var / "artifacts"),
            "DRIFTBOARD_IMPORT_ROOTS": str(workdir / "models"),
            "DRIFTBOARD_RUN_LEASE_SECONDS": str(LEASE_SECONDS),
            "DRIFTBOARD_MAX_QUEUED_RUNS": str(max(50, 2 * args.artifacts)),
            "OMP_NUM_THREADS": "1",
        }
    )
    if args.chunk:
        os.environ["DRIFTBOARD_RESULT_CHUNK_SAMPLES"] = str(args.chunk)
    return workdir


ARGS = arguments()
WORKDIR = configure(ARGS)

import django  # noqa: E402

django.setup()

import psutil  # noqa: E402
import torch  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models import Count  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from evals.models import DriftVerdict, EvalRun, MetricSnapshot, SampleResult  # noqa: E402
from evals.scoring.demo_models import build_demo_models  # noqa: E402
from evals.services import eval_runs_sweep, pipeline  # noqa: E402
from evals.services.datasets import dataset_import  # noqa: E402
from tests.conftest import purge_broker  # noqa: E402


@dataclass
class Worker:
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "driftboard",
            "worker",
            "-Q",
            "scoring,offpeak,publish",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"chaos{time.monotonic_ns()}@%h",
            "--loglevel",
            "WARNING",
        ]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def pids(self) -> set[int]:
        try:
            parent = psutil.Process(self.process.pid)
            return {parent.pid, *(child.pid for child in parent.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Kill:
    at: float
    runs: int
    samples_done: int
    samples_saved: int

    @property
    def recomputed(self) -> int:
        return max(0, self.samples_done - self.samples_saved)


@dataclass
class Report:
    kills: list[Kill] = field(default_factory=list)
    seconds: float = 0.0


def nudged_copy(source: Path, target: Path, seed: int) -> Path:
    """The model folder with every float tensor nudged by 1e-4·N(0, 1): new weights, same behaviour."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    generator = torch.Generator().manual_seed(seed)
    state = load_file(weights)
    nudged = {
        name: tensor + 1e-4 * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
        if tensor.is_floating_point()
        else tensor
        for name, tensor in state.items()
    }
    save_file(nudged, weights, metadata={"format": "pt"})
    return target


def prepare(args: argparse.Namespace, workdir: Path) -> int:
    """Migrate, build the demo models, freeze the golden set, create families and register artifacts."""
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)  # a DATABASE_URL may hold an earlier run
    purge_broker()
    demo_dir = workdir / "demo"
    if not (demo_dir / "drifted" / "model.safetensors").exists():
        build_demo_models(demo_dir, preset="test", log=lambda _line: None)
    golden = dataset_import(name="golden", filename="golden.jsonl", source=demo_dir / "golden.jsonl")
    families = [
        pipeline.family_create(
            slug=f"chaos-{index}", kind="causal-lm", base_path=str(demo_dir / "base"), datasets=["golden"]
        )
        for index in range(args.families)
    ]
    sources = [demo_dir / name for name in ("base", "improved", "drifted")]
    for index in range(args.artifacts):
        folder = nudged_copy(
            sources[index % 3], workdir / "models" / f"artifact-{index}", seed=args.seed * 1000 + index
        )
        pipeline.artifact_submit(
            family=families[index % args.families],
            commit_sha=hashlib.sha1(f"chaos {index}".encode()).hexdigest(),
            path=str(folder),
        )
    return golden.sample_count


def kill_one(worker: Worker) -> Kill:
    """SIGKILL the worker's process group; note what its runs had done and what was saved."""
    pids = worker.pids()
    worker.kill()
    running = [
        run
        for run in running_runs().select_related("artifact")
        if run.worker.rpartition(":")[2].isdigit() and int(run.worker.rpartition(":")[2]) in pids
    ]
    saved = sum(SampleResult.objects.filter(weights_sha256=run.artifact.sha256).count() for run in running)
    return Kill(time.monotonic(), len(running), sum(run.samples_done for run in running), saved)


def busy_worker(workers: list[Worker], default: int) -> int:
    """The worker holding a running run (the one whose kill costs something), else `default`."""
    holders = {int(w.rpartition(":")[2]) for w in running_runs().values_list("worker", flat=True) if ":" in w}
    return next((index for index, worker in enumerate(workers) if worker.pids() & holders), default)


def running_runs():
    return EvalRun.objects.filter(status=EvalRun.Status.RUNNING)


def unfinished() -> int:
    return EvalRun.objects.exclude(status__in=[EvalRun.Status.SUCCEEDED, EvalRun.Status.FAILED]).count()


def chaos(args: argparse.Namespace, workdir: Path) -> Report:
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    workers = [Worker(logs / f"worker{index}.log").start() for index in range(2)]
    rng = random.Random(args.seed)
    report, started = Report(), time.monotonic()
    next_kill = started + args.kill_every * rng.uniform(0.75, 1.25)
    next_sweep = started
    try:
        while time.monotonic() - started < args.duration and unfinished():
            now = time.monotonic()
            if now >= next_kill:
                index = busy_worker(workers, default=len(report.kills) % len(workers))
                report.kills.append(kill_one(workers[index]))
                workers[index] = Worker(logs / f"worker{index}.log").start()
                next_kill = now + args.kill_every * rng.uniform(0.75, 1.25)
            if now >= next_sweep:
                eval_runs_sweep()
                next_sweep = now + SWEEP_EVERY_SECONDS
            time.sleep(0.2)
        while unfinished() and time.monotonic() - started < args.duration + 600:
            eval_runs_sweep()
            time.sleep(SWEEP_EVERY_SECONDS)
    finally:
        for worker in workers:
            worker.stop()
    report.seconds = time.monotonic() - started
    return report


def table(args: argparse.Namespace, report: Report, samples_per_run: int) -> str:
    runs = EvalRun.objects.all()
    succeeded = runs.filter(status=EvalRun.Status.SUCCEEDED).count()
    repeated_runs = runs.values("artifact", "dataset", "kind").annotate(n=Count("id")).filter(n__gt=1).count()
    duplicate_snapshots = (
        MetricSnapshot.objects.values("artifact", "dataset", "metric").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    duplicate_verdicts = (
        DriftVerdict.objects.values("artifact", "dataset", "metric").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    lost = [kill.recomputed for kill in report.kills if kill.runs]
    chunk = args.chunk or settings.DRIFTBOARD_RESULT_CHUNK_SAMPLES
    rows = [
        ("artifacts × families", f"{args.artifacts} × {args.families}"),
        ("workers (Redis broker)", "2"),
        ("samples per run", str(samples_per_run)),
        ("result chunk (samples)", str(chunk)),
        ("seconds (kills for)", f"{report.seconds:.0f} ({args.duration:.0f})"),
        ("kills (mid-run)", f"{len(report.kills)} ({len(lost)})"),
        ("runs succeeded / total", f"{succeeded} / {runs.count()}"),
        ("runs failed", str(runs.filter(status=EvalRun.Status.FAILED).count())),
        ("runs per artifact × dataset > 1", str(repeated_runs)),
        ("duplicate snapshots", str(duplicate_snapshots)),
        ("duplicate verdicts", str(duplicate_verdicts)),
        ("samples recomputed, total", str(sum(lost))),
        (
            "samples recomputed per mid-run kill, mean / max",
            f"{sum(lost) / len(lost):.1f} / {max(lost)}" if lost else "—",
        ),
        ("max per kill ÷ chunk", f"{max(lost) / chunk:.2f}" if lost else "—"),
    ]
    return "\n".join(["| Chaos run | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def main() -> int:
    samples_per_run = prepare(ARGS, WORKDIR)
    report = chaos(ARGS, WORKDIR)
    print(table(ARGS, report, samples_per_run))
    print(f"\nwork folder: {WORKDIR} (worker logs under logs/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
