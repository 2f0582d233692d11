"""Experiment loops at scale: results.tsv import, re-import and growth, and the pages over many runs.

Runs in a throwaway SQLite test database (created and destroyed here). The first table times the
import of a simulated results.tsv of --rows rows against parsing it alone; the second times the
experiment page, comparison page and runs API over --rows runs against the same over 30 runs.

    python bench/experiments.py [--rows 5000] [--repeat 5]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "driftboard.settings")
os.environ.setdefault("DRIFTBOARD_TESTING", "1")
os.environ.setdefault("DRIFTBOARD_VAR_DIR", tempfile.mkdtemp(prefix="driftboard-bench-experiments-"))
os.environ.setdefault("CELERY_BROKER_URL", "memory://")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from evals.models import Experiment  # noqa: E402
from evals.services.experiments import experiment_create, results_import, results_parse  # noqa: E402

SMALL = 30


def simulated_results(rows: int, seed: int = 0) -> str:
    """A loop that keeps a proposal when it beats the best so far; one run in twenty crashes."""
    rng = np.random.default_rng(seed)
    best, lines = 1.0, ["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]
    for i in range(rows):
        if rng.random() < 0.05:
            lines.append(f"{i:07x}\t0.000000\t0.0\tcrash\tidea {i} (OOM)")
            continue
        value = best + rng.normal(0.001, 0.003)
        status = "keep" if value < best else "discard"
        best = min(best, value)
        lines.append(f"{i:07x}\t{value:.6f}\t{44 + rng.random():.1f}\t{status}\tidea {i}")
    return "\n".join(lines) + "\n"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return 1000 * (time.perf_counter() - start)


def import_table(rows: int) -> None:
    text = simulated_results(rows)
    lines = text.splitlines(keepends=True)
    grown_from = "".join(lines[: int(len(lines) * 0.99)])
    parse_ms = timed(lambda: results_parse(text))
    fresh = experiment_create(slug="bench-import")
    grown = experiment_create(slug="bench-grown")
    results_import(experiment=grown, data=grown_from)
    cases = [
        ("parse only (reference)", parse_ms),
        (f"first import, {rows} rows", timed(lambda: results_import(experiment=fresh, data=text))),
        ("same file again (adds nothing)", timed(lambda: results_import(experiment=fresh, data=text))),
        ("file grown by 1 %", timed(lambda: results_import(experiment=grown, data=text))),
    ]
    print(f"\nresults.tsv import ({rows} rows)")
    print(f"{'case':36} {'ms':>10} {'× parse':>9}")
    for name, ms in cases:
        print(f"{name:36} {ms:10.1f} {ms / parse_ms:9.1f}")


def measure(client: Client, url: str, repeat: int) -> tuple[float, int]:
    client.get(url)
    timings = [timed(lambda: client.get(url)) for _ in range(repeat)]
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200, url
    return statistics.median(timings), len(queries.captured_queries)


def pages_table(rows: int, repeat: int) -> None:
    small = experiment_create(slug="bench-small")
    results_import(experiment=small, data=simulated_results(SMALL, seed=1))
    large = Experiment.objects.get(slug="bench-import")
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    client = Client()
    client.force_login(user)
    pages = {
        "experiment page": "/experiments/{}/",
        "compare page": "/experiments/{}/compare/",
        "runs API, first page": "/api/v1/experiments/{}/runs/",
        "experiment list": "/experiments/",
    }
    print(f"\npages: {rows} runs against {SMALL} runs (median of {repeat})")
    print(f"{'page':24} {'ms small':>9} {'ms large':>9} {'ratio':>7} {'queries':>9}")
    for name, pattern in pages.items():
        small_ms, small_q = measure(client, pattern.format(small.slug), repeat)
        large_ms, large_q = measure(client, pattern.format(large.slug), repeat)
        print(f"{name:24} {small_ms:9.1f} {large_ms:9.1f} {large_ms / small_ms:7.1f} {small_q:>4}/{large_q:<4}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        import_table(args.rows)
        pages_table(args.rows, args.repeat)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
