"""Dashboard pages over 1,000 artifacts × 5 metric series, against the same pages over two artifacts.

Runs in a throwaway SQLite test database (created and destroyed here). Prints, per page, the median
CPU time of both boards and their ratio (and the ratio of wall times), the query counts and the
response size.

    python bench/pages.py [--artifacts 1000] [--samples 1000] [--repeat 5]
"""

import argparse
import datetime
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "driftboard.settings")
os.environ.setdefault("DRIFTBOARD_TESTING", "1")
SCRATCH = None if "DRIFTBOARD_VAR_DIR" in os.environ else tempfile.mkdtemp(prefix="driftboard-bench-pages-")
os.environ.setdefault("DRIFTBOARD_VAR_DIR", SCRATCH or "")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from evals.models import DriftVerdict, EvalRun, GoldenDataset, GoldenSample, MetricSnapshot, Threshold  # noqa: E402
from registry.models import Artifact, ModelFamily, PromotionEvent  # noqa: E402

# Five series per artifact: bits per byte on three datasets, perplexity on two.
SERIES = [("bits_per_byte", 0), ("bits_per_byte", 1), ("bits_per_byte", 2), ("perplexity", 0), ("perplexity", 1)]
PROMOTE_EVERY = 10
FINGERPRINT = {"dataset_sha256": "d", "tokenizer_hash": "t", "scorer_version": "bench/1", "max_length": 1024}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_datasets(samples: int) -> list[GoldenDataset]:
    datasets = GoldenDataset.objects.bulk_create(
        GoldenDataset(name=f"golden-{i}", version=1, sha256=sha(f"d{i}"), sample_count=samples) for i in range(3)
    )
    GoldenSample.objects.bulk_create(
        GoldenSample(
            dataset=d,
            position=p,
            sample_id=f"s{p}",
            text=f"Golden sample {p} of {d.name}. " * 4,
            category=("prose", "code", "dialogue")[p % 3],
            sha256=sha(f"{d.pk}:{p}"),
        )
        for d in datasets
        for p in range(samples)
    )
    return datasets


def make_artifacts(family: ModelFamily, first: int, count: int) -> list[Artifact]:
    return Artifact.objects.bulk_create(
        Artifact(
            family=family,
            version=v,
            sha256=sha(f"w{v}"),
            size_bytes=1 << 20,
            format="safetensors",
            storage_path=f"objects/{v}",
            commit_sha=hashlib.sha1(f"c{v}".encode()).hexdigest(),
            branch="main" if v % 3 else f"feature/{v}",
            drift_flag=("green", "amber", "red")[v % 3],
            stage="staging",
            status="scored",
        )
        for v in range(first, first + count)
    )


def arrays(samples: int, level: float, rng: np.random.Generator) -> dict[str, bytes]:
    return {
        "positions": np.arange(samples, dtype=np.int32).tobytes(),
        "numerators": (100.0 * (level + rng.normal(0, 0.1, samples))).tobytes(),
        "denominators": np.full(samples, 100.0).tobytes(),
    }


def make_scores(artifacts: list[Artifact], datasets: list[GoldenDataset], baseline: Artifact, samples: int) -> None:
    rng = np.random.default_rng(0)
    snapshots, verdicts, runs, events = [], [], [], []
    now = timezone.now()
    for artifact in artifacts:
        for metric, d in SERIES:
            level = 2.0 + rng.normal(0, 0.02)
            value = level if metric == "bits_per_byte" else float(np.exp(level))
            snapshots.append(
                MetricSnapshot(
                    artifact=artifact,
                    dataset=datasets[d],
                    metric=metric,
                    scorer_version="bench/1",
                    commit_sha=artifact.commit_sha,
                    value=value,
                    n=samples,
                    std=0.1,
                    ci_low=value * 0.99,
                    ci_high=value * 1.01,
                    fingerprint=FINGERPRINT,
                    **arrays(samples, level, rng),
                )
            )
            if artifact != baseline:
                verdicts.append(
                    DriftVerdict(
                        artifact=artifact,
                        baseline=baseline,
                        dataset=datasets[d],
                        metric=metric,
                        candidate_value=value,
                        baseline_value=2.0,
                        delta=-0.01,
                        ci_low=-0.02,
                        ci_high=0.0,
                        outcome=artifact.drift_flag,
                        reasons=["bench"],
                        samples_used=samples,
                        samples_total=samples,
                        per_category={"prose": {"delta": -0.01, "n": samples // 3}},
                    )
                )
        runs += [
            EvalRun(
                artifact=artifact,
                dataset=d,
                status="succeeded",
                enqueued_at=now,
                started_at=now,
                finished_at=now + datetime.timedelta(seconds=30),
                samples_done=samples,
                samples_total=samples,
                tokens=10_000,
            )
            for d in datasets
        ]
        if artifact.version % PROMOTE_EVERY == 0:
            events.append(PromotionEvent(artifact=artifact, action="promote", to_stage="production"))
    MetricSnapshot.objects.bulk_create(snapshots, batch_size=500)
    DriftVerdict.objects.bulk_create(verdicts, batch_size=500)
    EvalRun.objects.bulk_create(runs, batch_size=500)
    PromotionEvent.objects.bulk_create(events)


def page_urls(family: ModelFamily, artifact: Artifact, threshold: Threshold, reference: Artifact) -> dict[str, str]:
    compare = f"?a={reference.pk}&b={artifact.pk}"
    return {
        "home": reverse("home"),
        "artifact list": reverse("artifact-list"),
        "artifact list, filtered": reverse("artifact-list") + "?flag=amber&branch=main&page=2",
        "artifact review": reverse("artifact-detail", args=[artifact.pk]),
        "progress.json": reverse("artifact-progress", args=[artifact.pk]),
        "family: 5 series": reverse("family-detail", args=[family.slug]),
        "family: 1 series": reverse("family-detail", args=[family.slug]) + "?metric=bits_per_byte",
        "family: 5 series, all": reverse("family-detail", args=[family.slug]) + "?all=1",
        "compare two versions": reverse("family-compare", args=[family.slug]) + compare,
        "compare API": reverse("api-compare-list") + compare,
        "thresholds": reverse("threshold-list"),
        "threshold detail": reverse("threshold-detail", args=[threshold.pk]),
        "queues": reverse("queues"),
    }


def measure(client: Client, url: str, repeat: int) -> tuple[float, float, int, int]:
    """Median CPU milliseconds and wall milliseconds, queries and bytes of one page.

    CPU time of this process (the test client, Django and SQLite all run in it) is what the page
    costs; wall time also counts whatever else the machine runs, so the ratios use CPU time.
    """
    client.get(url)
    cpu, wall = [], []
    for _ in range(repeat):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        response = client.get(url)
        cpu.append(1000 * (time.process_time() - start_cpu))
        wall.append(1000 * (time.perf_counter() - start_wall))
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return statistics.median(cpu), statistics.median(wall), len(queries.captured_queries), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        run(args)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        if SCRATCH:
            shutil.rmtree(SCRATCH, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    user = get_user_model().objects.create_user("bench", is_staff=True)
    client = Client()
    client.force_login(user)
    family = ModelFamily.objects.create(slug="bench-gpt", kind="causal-lm")
    datasets = make_datasets(args.samples)
    threshold = Threshold.objects.create(family=family, metric="bits_per_byte", limit=0.02, rationale="bench")
    baseline, candidate = make_artifacts(family, 1, 2)
    Artifact.objects.filter(pk=baseline.pk).update(stage="production")
    make_scores([baseline, candidate], datasets, baseline, args.samples)
    small_urls = page_urls(family, candidate, threshold, baseline)
    small = {name: measure(client, url, args.repeat) for name, url in small_urls.items()}

    started = time.perf_counter()
    artifacts = make_artifacts(family, 3, args.artifacts - 2)
    make_scores(artifacts, datasets, baseline, args.samples)
    build_seconds = time.perf_counter() - started
    review_target = artifacts[-1]
    large = {
        name: measure(client, url, args.repeat)
        for name, url in page_urls(family, review_target, threshold, artifacts[len(artifacts) // 2]).items()
    }

    print(
        f"Dashboard pages: 2 artifacts vs {args.artifacts:,} artifacts × {len(SERIES)} series, "
        f"{args.samples:,} samples per snapshot (data built in {build_seconds:.1f} s; median of {args.repeat})"
    )
    print(
        f"{'page':<26}{'2 artifacts ms':>15}{'full ms':>10}{'ratio':>8}{'wall ratio':>12}{'queries':>10}{'full KB':>10}"
    )
    for name, (small_ms, small_wall, small_queries, _) in small.items():
        large_ms, large_wall, large_queries, large_bytes = large[name]
        queries = f"{small_queries}→{large_queries}"
        print(
            f"{name:<26}{small_ms:>15.1f}{large_ms:>10.1f}{large_ms / small_ms:>8.1f}"
            f"{large_wall / small_wall:>12.1f}{queries:>10}{large_bytes / 1024:>10.0f}"
        )


if __name__ == "__main__":
    main()
