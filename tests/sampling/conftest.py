"""The demo family scored with sequential sampling: real models, real services, a worker's steps
called in-process (dispatch, claim, execute), and the full-set truth computed independently."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from evals.models import EvalRun
from evals.scoring.cache import InMemoryResultStore, score_samples
from evals.scoring.loading import load_model
from evals.scoring.scorers import METRICS
from evals.services import dataset_import, eval_runs_dispatch
from evals.services.pipeline import artifact_submit as artifact_register
from evals.services.pipeline import eval_run_process, family_create
from registry.models import Artifact, ModelFamily
from tests.conftest import purge_broker

BITS_PER_BYTE = METRICS["bits_per_byte"]
MIN_SAMPLES = 40
CHUNK = 20


@dataclass(frozen=True)
class Truth:
    """Full-set bits per byte of each demo model, scored without the services."""

    nll_bits: dict[str, np.ndarray]
    bytes: np.ndarray

    def delta(self, candidate: str, baseline: str = "base") -> float:
        value = {name: BITS_PER_BYTE.value(self.nll_bits[name].sum(), self.bytes.sum()) for name in self.nll_bits}
        return float(BITS_PER_BYTE.change(value[candidate], value[baseline]))


@pytest.fixture(scope="session")
def truth(demo_build) -> Truth:
    samples = [json.loads(line) for line in demo_build.golden.read_text().splitlines()]
    nll_bits, byte_counts = {}, None
    for name in ("base", "improved", "drifted"):
        scored = score_samples(load_model(getattr(demo_build, name), kind="causal-lm"), samples, InMemoryResultStore())
        nll_bits[name], byte_counts = (
            scored.values("causal-nll")["nll"] / np.log(2),
            scored.values("causal-nll")["bytes"],
        )
    return Truth(nll_bits=nll_bits, bytes=byte_counts.astype(np.float64))


@pytest.fixture
def broker():
    purge_broker()
    yield
    purge_broker()


@pytest.fixture
def family(db, broker, demo_build) -> ModelFamily:
    dataset_import(name="demo-golden", filename="golden.jsonl", source=demo_build.golden)
    return family_create(
        slug="sampled",
        kind="causal-lm",
        base_path=str(demo_build.base),
        datasets=["demo-golden"],
        sampling="sequential",
        sampling_min_samples=MIN_SAMPLES,
        sampling_chunk_size=CHUNK,
    )


def register(family: ModelFamily, path: Path, commit: str, *, seed: int | None = 7) -> Artifact:
    """Register weights; `seed` replays a known sampling order (None: the run draws its own)."""
    artifact = artifact_register(family=family, commit_sha=commit * 40, branch="main", path=str(path)).artifact
    if seed is not None:
        artifact.runs.update(sampling={"seed": seed})
    return artifact


def work(queue: str = "scoring") -> list[EvalRun]:
    """What a worker does: take every run put on `queue` and execute it; the runs, refreshed."""
    eval_runs_dispatch()
    done = []
    for run_id in EvalRun.objects.filter(queue=queue, status="queued").values_list("pk", flat=True):
        eval_run_process(run_id=run_id, worker="test-worker")
        done.append(EvalRun.objects.get(pk=run_id))
    return done


@pytest.fixture
def baseline(family, demo_imports) -> Artifact:
    """The base model, scored in full (nothing to sample against) and made the baseline."""
    artifact = register(family, demo_imports["base"], "a")
    work()
    artifact.refresh_from_db()
    assert artifact.stage == "production"
    return artifact
