"""The demo family: small GPT-2 models trained on the spot, registered through the real pipeline.

The base model becomes the first baseline; an improved candidate (trained longer) and a drifted
one (fine-tuned on other text) follow, so the board shows verdicts that the worker really reached.
"""

import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.utils import timezone

from evals.models import GoldenDataset, TrafficWindow
from evals.scoring.demo_models import (
    DRIFT_SOURCE,
    TRAINING_SOURCES,
    DemoBuild,
    build_demo_models,
    is_golden,
    read_passages,
)
from evals.services import dataset_import, pipeline
from evals.services.traffic import traffic_import
from registry.models import Artifact, ModelFamily

DEMO_FAMILY = "demo-gpt"
DEMO_DATASET = "demo-golden"
DEMO_COMMITS = {
    "base": ("3f2c1a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a", "main"),
    "improved": ("8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b", "main"),
    "drifted": ("c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3", "finetune/python-code"),
}


def demo_models(outdir: Path, log: Callable[[str], None], preset: str = "demo") -> DemoBuild:
    marker = outdir / "BUILT"
    paths = DemoBuild(outdir / "base", outdir / "improved", outdir / "drifted", outdir / "golden.jsonl", {})
    if marker.exists():
        log(f"Demo models already built in {outdir}")
        return paths
    build = build_demo_models(outdir, preset=preset, log=log)
    marker.write_text("ok")
    return build


def demo_family(build: DemoBuild) -> ModelFamily:
    existing = ModelFamily.objects.filter(slug=DEMO_FAMILY).first()
    if existing:
        return existing
    if not GoldenDataset.objects.filter(name=DEMO_DATASET).exists():
        dataset_import(name=DEMO_DATASET, filename=build.golden.name, source=build.golden)
    return pipeline.family_create(
        slug=DEMO_FAMILY,
        kind=ModelFamily.Kind.CAUSAL_LM,
        base_path=str(build.base),
        datasets=[DEMO_DATASET],
        description="Small GPT-2 models trained on the shipped corpus: a base, an improved and a drifted candidate.",
    )


def _allow_import(folder: Path) -> None:
    roots = settings.DRIFTBOARD_IMPORT_ROOTS
    if not any(folder.resolve().is_relative_to(root) for root in roots):
        roots.append(folder.resolve())


def wait_until_scored(artifact: Artifact, timeout: float) -> Artifact:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        artifact.refresh_from_db()
        if artifact.status not in (Artifact.Status.REGISTERED, Artifact.Status.QUEUED, Artifact.Status.SCORING):
            return artifact
        time.sleep(0.5)
    raise TimeoutError(f"{artifact} was not scored within {timeout:.0f} s; is a worker running?")


def demo_load(
    outdir: Path, log: Callable[[str], None] = print, timeout: float = 600, preset: str = "demo"
) -> list[Artifact]:
    """Build (once) and register the demo models, waiting for each verdict. Needs a running worker."""
    build = demo_models(outdir, log, preset=preset)
    family = demo_family(build)
    _allow_import(outdir)
    artifacts = []
    parent = None
    for name in ("base", "improved", "drifted"):
        commit, branch = DEMO_COMMITS[name]
        registration = pipeline.artifact_submit(
            family=family,
            commit_sha=commit,
            branch=branch,
            path=str(getattr(build, name)),
            parent=parent,
        )
        artifact = registration.artifact
        log(f"Registered {name} as {artifact} — waiting for the worker's verdict…")
        artifact = wait_until_scored(artifact, timeout)
        log(f"  {artifact}: status {artifact.status}, drift flag {artifact.drift_flag or '—'}")
        artifacts.append(artifact)
        parent = parent or artifact
    demo_traffic_load(family, log, timeout)
    return artifacts


DEMO_WINDOW_SAMPLES = 200
DEMO_CODE_SHARE = 0.8


def demo_traffic_rows(now: datetime.datetime, seed: int = 0) -> list[dict]:
    """Two days of traffic: the prose the models were trained on, then a day dominated by Python code."""
    rng = np.random.default_rng(seed)
    prose = [
        (category, passage)
        for category, filename in TRAINING_SOURCES.items()
        for passage in read_passages(filename)
        if not is_golden(passage)
    ]
    code = read_passages(DRIFT_SOURCE)
    n_code = int(DEMO_WINDOW_SAMPLES * DEMO_CODE_SHARE)
    days = [
        [prose[i] for i in rng.choice(len(prose), DEMO_WINDOW_SAMPLES, replace=False)],
        [("code", code[i]) for i in rng.choice(len(code), n_code, replace=False)]
        + [prose[i] for i in rng.choice(len(prose), DEMO_WINDOW_SAMPLES - n_code, replace=False)],
    ]
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - datetime.timedelta(days=2)
    return [
        {
            "id": f"day{day}-{i}",
            "text": text,
            "category": category,
            "timestamp": (start + datetime.timedelta(days=day, seconds=60 * i)).isoformat(),
        }
        for day, rows in enumerate(days)
        for i, (category, text) in enumerate(rows)
    ]


def demo_traffic_load(family: ModelFamily, log: Callable[[str], None], timeout: float) -> list[TrafficWindow]:
    """Import the demo's two traffic windows once and wait until the production model was compared on both."""
    if family.traffic_windows.exists():
        return list(family.traffic_windows.all())
    log_bytes = "\n".join(json.dumps(row) for row in demo_traffic_rows(timezone.now())).encode()
    windows = traffic_import(family=family, filename="demo-traffic.jsonl", source=log_bytes, window="1d")
    deadline = time.monotonic() + timeout
    for window in windows:
        while not TrafficWindow.objects.get(pk=window.pk).outcome and time.monotonic() < deadline:
            time.sleep(0.5)
        window.refresh_from_db()
        log(f"Traffic window {window.number} ({window.starts_at:%Y-%m-%d}): {window.outcome or 'not compared yet'}")
    return windows
