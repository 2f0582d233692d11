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

`--scenario embedded-broker` puts the server-less broker under the same kind of stress instead: four
producers, a beat-like periodic sender and two consumers, each a process, beside one busy loop per
core, on Driftboard's `filesystem://` transport and on kombu's own for comparison; every
`--slow-every`-th message is written in two halves 20 ms apart (a producer preempted mid-message; 0:
never). Reported: messages sent, received, lost, duplicated, consumers dead, files set aside.

`--scenario judge` kills judge workers mid-call instead: `--artifacts` judge runs over `--prompts`
stored answers each (no model is loaded), a local judge whose every call takes `--call-seconds`,
two judge-queue workers, the busy one SIGKILLed every `--kill-every` seconds. Reported: runs
succeeded once (attempts), snapshots and judgements per run, and the judge calls the kills cost.

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
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

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
    parser.add_argument("--scenario", default="workers", help="workers (default) | embedded-broker | judge")
    parser.add_argument("--prompts", type=int, default=20, help="judge: stored answers per judge run")
    parser.add_argument("--call-seconds", type=float, default=0.5, help="judge: how long each judge call takes")
    parser.add_argument("--messages", type=int, default=2500, help="embedded-broker: messages per producer")
    parser.add_argument("--slow-every", type=int, default=10, help="embedded-broker: every Nth write preempted")
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

from driftboard.queue_names import Queue  # noqa: E402
from evals.models import DriftVerdict, EvalRun, Judgement, MetricSnapshot, SampleResult  # noqa: E402
from evals.scoring.demo_models import build_demo_models  # noqa: E402
from evals.services import eval_runs_dispatch, eval_runs_sweep, pipeline  # noqa: E402
from evals.services.datasets import dataset_import  # noqa: E402
from registry.models import Artifact  # noqa: E402
from tests.conftest import purge_broker  # noqa: E402
from tests.factories import ArtifactFactory  # noqa: E402
from tests.hardening.broker_stress import EMBEDDED, STOCK, stress  # noqa: E402
from tests.judges.conftest import chat_reply  # noqa: E402
from tests.judges.test_judge_preference_verdicts import facts_of, scored, store_answers  # noqa: E402


@dataclass
class Worker:
    log_path: Path
    process: subprocess.Popen | None = None
    # What every worker of a scenario listens on.
    queues: ClassVar[str] = "scoring,offpeak,publish"

    def start(self) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "driftboard",
            "worker",
            "-Q",
            self.queues,
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


def workers_scenario() -> None:
    samples_per_run = prepare(ARGS, WORKDIR)
    report = chaos(ARGS, WORKDIR)
    print(table(ARGS, report, samples_per_run))
    print(f"\nwork folder: {WORKDIR} (worker logs under logs/)")


def embedded_broker_scenario() -> None:
    """Driftboard's embedded broker and kombu's file-system transport, each through the same stress."""
    rows = []
    for label, transport in (("Driftboard filesystem://", EMBEDDED), ("kombu filesystem", STOCK)):
        folder = WORKDIR / "broker" / transport.partition(":")[0].rpartition(".")[2]
        result = stress(folder, transport=transport, per_producer=ARGS.messages, slow_every=ARGS.slow_every)
        rows.append(
            f"| {label} | {result.sent} | {len(result.received)} | {result.lost} | {result.duplicated} "
            f"| {result.consumer_deaths} / 2 | {result.broken_files} | {result.seconds:.0f} |"
        )
    header = "| Transport | sent | received | lost | duplicated | consumers dead | set aside | seconds |"
    print("\n".join([header, "|---|---|---|---|---|---|---|---|", *rows]))
    print(f"\nwork folder: {WORKDIR / 'broker'} (process logs under */logs/)")


class SlowJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge whose every call takes `seconds`; it counts the calls per prompt."""

    seconds = 0.5
    calls: Counter = Counter()

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.calls[hashlib.sha256(body).hexdigest()] += 1
        time.sleep(self.seconds)
        raw = json.dumps(chat_reply("Fine. Rating: [[7]]")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


def prepare_judge_runs(args: argparse.Namespace, judge_url: str) -> None:
    """Judge runs waiting on the judge queue, on answers stored as their scoring runs store them."""
    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    purge_broker()
    rows = [{"id": f"p{i}", "prompt": f"What comes after {i}?"} for i in range(args.prompts)]
    source = io.BytesIO("\n".join(json.dumps(row) for row in rows).encode())
    dataset = dataset_import(name="prompts", filename="prompts.jsonl", source=source)
    family = pipeline.family_create(
        slug="chaos-judge",
        kind="causal-lm",
        datasets=["prompts"],
        scorers=["judge-score"],
        generation={"max_new_tokens": 8},
        judge={"url": judge_url, "model": "chaos-judge", "concurrency": 2},
    )
    for index in range(args.artifacts):
        artifact = ArtifactFactory(family=family, status=Artifact.Status.SCORING)
        scoring = scored(artifact, dataset)
        # Answers of their own: the same answer would be judged once, from the cache, for every run.
        store_answers(artifact, dataset, {i: f"{i + 1} comes next, says #{index}" for i in range(args.prompts)})
        EvalRun.objects.create(
            artifact=artifact,
            dataset=dataset,
            kind=EvalRun.Kind.JUDGE,
            queue=Queue.JUDGE,
            samples_total=args.prompts,
            judging={"model": facts_of(artifact), "scoring_run": scoring.pk},
        )


def judge_scenario() -> None:
    SlowJudge.seconds = ARGS.call_seconds
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prepare_judge_runs(ARGS, f"http://127.0.0.1:{server.server_port}/v1")
    Worker.queues = Queue.JUDGE.value
    eval_runs_dispatch()
    report = chaos(ARGS, WORKDIR)
    server.shutdown()
    runs = EvalRun.objects.filter(kind=EvalRun.Kind.JUDGE)
    attempts = Counter(runs.filter(status=EvalRun.Status.SUCCEEDED).values_list("attempts", flat=True))
    snapshots = MetricSnapshot.objects.values("artifact", "dataset", "metric").annotate(n=Count("id"))
    judgements = Judgement.objects.count()
    calls = sum(SlowJudge.calls.values())
    rows = [
        ("judge runs × prompts", f"{ARGS.artifacts} × {ARGS.prompts}"),
        ("judge workers (broker)", f"2 ({ARGS.broker.partition(':')[0]})"),
        ("seconds per judge call", f"{ARGS.call_seconds:g}"),
        ("seconds (kills for)", f"{report.seconds:.0f} ({ARGS.duration:.0f})"),
        ("kills (mid-run)", f"{len(report.kills)} ({sum(1 for kill in report.kills if kill.runs)})"),
        ("runs succeeded / total", f"{attempts.total()} / {runs.count()}"),
        ("runs failed / unfinished", f"{runs.filter(status=EvalRun.Status.FAILED).count()} / {unfinished()}"),
        ("succeeded runs by attempts", ", ".join(f"{n}: {count}" for n, count in sorted(attempts.items())) or "—"),
        ("duplicate snapshots", str(snapshots.filter(n__gt=1).count())),
        ("judgements stored / expected", f"{judgements} / {ARGS.artifacts * ARGS.prompts}"),
        ("judge calls / judgements (asked again after a kill)", f"{calls} / {judgements} ({calls - judgements})"),
    ]
    print("\n".join(["| Judge chaos run | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]))
    print(f"\nwork folder: {WORKDIR} (worker logs under logs/)")


SCENARIOS = {"workers": workers_scenario, "embedded-broker": embedded_broker_scenario, "judge": judge_scenario}


def main() -> int:
    SCENARIOS[ARGS.scenario]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
