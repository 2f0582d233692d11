"""A family watched on traffic without a worker: a golden set scored by the production artifact and two
windows (one like the golden set, one moved, with a new category) scored and compared in process."""

import json
from dataclasses import dataclass

import numpy as np

from evals.models import EvalRun, GoldenDataset, MetricSnapshot, TrafficWindow
from evals.services import dataset_import
from evals.services.pipeline import run_finished
from evals.services.traffic import traffic_import
from registry.models import Artifact, ModelFamily
from tests.factories import ArtifactFactory, FamilyFactory, float_bytes

HOSTILE = '<img src=x onerror="window.__xss=1"> </script><b>code</b>'
DAY = 86400
T0 = 1_760_000_000 - 1_760_000_000 % DAY
N = 300


def window_compared(*, run: EvalRun) -> TrafficWindow:
    """What a worker does once a window's run is scored: the comparison, its outcome and its effects."""
    run_finished(run=run)
    return TrafficWindow.objects.get(dataset=run.dataset)


@dataclass
class TrafficBoard:
    family: ModelFamily
    production: Artifact
    golden: GoldenDataset
    steady: TrafficWindow
    moved: TrafficWindow


def scored(artifact: Artifact, dataset: GoldenDataset, values: np.ndarray) -> MetricSnapshot:
    """The artifact's per-sample bits per byte on every sample of the dataset (100-byte samples)."""
    return MetricSnapshot.objects.create(
        artifact=artifact,
        dataset=dataset,
        metric="bits_per_byte",
        scorer_version="causal-nll@1",
        commit_sha=artifact.commit_sha,
        value=float(values.mean()),
        n=len(values),
        std=float(values.std()),
        ci_low=float(values.min()),
        ci_high=float(values.max()),
        fingerprint={},
        positions=np.arange(len(values), dtype=np.int32).tobytes(),
        numerators=float_bytes(100 * values),
        denominators=float_bytes(np.full(len(values), 100.0)),
    )


def rows(categories, start, prefix):
    return [
        {"id": f"{prefix}{i}", "text": f"{prefix} query {i}", "category": c, "timestamp": start + i}
        for i, c in enumerate(categories)
    ]


def build_traffic_board(tmp_path) -> TrafficBoard:
    rng = np.random.default_rng(0)
    family = FamilyFactory(slug="support", datasets=["support-golden"])
    golden_path = tmp_path / "golden.jsonl"
    golden_path.write_text(
        "\n".join(
            json.dumps({"id": f"g{i}", "text": f"golden {i}", "category": ["faq", "howto"][i % 2]}) for i in range(N)
        )
    )
    golden = dataset_import(name="support-golden", filename="golden.jsonl", source=golden_path)
    production = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    scored(production, golden, rng.lognormal(0, 0.2, N))
    steady_rows = rows([["faq", "howto"][i % 2] for i in range(N)], T0, "s")
    moved_rows = rows(["faq"] * (N - 60) + ["code"] * 60, T0 + DAY, "m")
    moved_rows[-1]["text"] = HOSTILE
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in steady_rows + moved_rows))
    steady, moved = traffic_import(family=family, filename=log.name, source=log.read_bytes(), window="1d")
    scored(production, steady.dataset, rng.lognormal(0, 0.2, N))
    values = rng.lognormal(0, 0.2, N)
    values[-60:] *= 1.8
    values[-1] = 9.0
    scored(production, moved.dataset, values)
    window_compared(run=steady.run)
    window_compared(run=moved.run)
    steady.refresh_from_db()
    moved.refresh_from_db()
    return TrafficBoard(family=family, production=production, golden=golden, steady=steady, moved=moved)
