"""A candidate whose tokenizer differs from its baseline's: bits per byte (vocabulary-agnostic) is
still compared; perplexity, which counts tokens, is `incomparable` with the reason, on the review
page and in the PR comment."""

import html

import numpy as np
import pytest

from evals.comments import REASON_CHARS, comment_render, markdown_escape
from evals.models import DriftVerdict, EvalRun
from evals.services import artifact_evaluate
from evals.services.pipeline import family_create
from tests.factories import ArtifactFactory, DatasetFactory, SnapshotFactory, float_bytes

N = 300
FINGERPRINT = {"dataset_sha256": "d", "tokenizer_hash": "old", "scorer_version": "causal-rolling/1", "max_length": 256}


@pytest.fixture
def retokenized(db):
    family = family_create(slug="fam", kind="causal-lm", datasets=["golden"])
    dataset = DatasetFactory(name="golden", samples=N)
    baseline = ArtifactFactory(family=family, stage="production", status="promoted")
    base_bpb = SnapshotFactory(artifact=baseline, dataset=dataset, n=N, seed=1, fingerprint=FINGERPRINT)
    SnapshotFactory(artifact=baseline, dataset=dataset, n=N, seed=2, metric="perplexity", fingerprint=FINGERPRINT)
    candidate = ArtifactFactory(family=family, status="scoring")
    EvalRun.objects.create(artifact=candidate, dataset=dataset, status="succeeded", samples_total=N)
    new_tokenizer = {**FINGERPRINT, "tokenizer_hash": "new"}
    _, base_num, _ = base_bpb.arrays()
    better = base_num * 0.97 * (1 + np.random.default_rng(3).normal(0, 0.01, N))
    SnapshotFactory(artifact=candidate, dataset=dataset, n=N, numerators=float_bytes(better), fingerprint=new_tokenizer)
    SnapshotFactory(artifact=candidate, dataset=dataset, n=N, seed=4, metric="perplexity", fingerprint=new_tokenizer)
    artifact_evaluate(artifact=candidate)
    return candidate


def test_bits_per_byte_is_still_compared(retokenized):
    verdict = retokenized.verdicts.get(metric="bits_per_byte")

    assert verdict.outcome == DriftVerdict.Outcome.GREEN
    assert verdict.delta == pytest.approx(0.03, abs=0.01)


def test_perplexity_is_incomparable_because_of_the_tokenizer(retokenized):
    verdict = retokenized.verdicts.get(metric="perplexity")

    assert verdict.outcome == DriftVerdict.Outcome.INCOMPARABLE and verdict.delta is None
    assert verdict.reasons[0].startswith("The tokenizer differs from the baseline's: perplexity counts tokens")


def test_the_review_page_and_the_pr_comment_give_the_reason(retokenized, client, user):
    reason = retokenized.verdicts.get(metric="perplexity").reasons[0]
    retokenized.refresh_from_db()
    client.force_login(user)

    page = client.get(retokenized.get_absolute_url()).content.decode()
    comment = comment_render(artifact=retokenized, marker="<!-- driftboard:fam -->", page_url="https://board/a/1")

    assert html.escape(reason) in page
    assert markdown_escape(reason, REASON_CHARS) in comment


def test_an_ungated_incomparable_perplexity_does_not_hold_weights_whose_gated_metrics_are_green(retokenized):
    retokenized.refresh_from_db()
    assert retokenized.drift_flag == "green"
    assert retokenized.status == "promoted"  # bits per byte, the gated metric, is green on the base branch


def test_an_incomparable_metric_with_a_threshold_in_force_still_counts(db):
    family = family_create(slug="gated", kind="causal-lm", datasets=["golden"])
    dataset = DatasetFactory(name="golden", samples=N)
    baseline = ArtifactFactory(family=family, stage="production", status="promoted")
    SnapshotFactory(artifact=baseline, dataset=dataset, n=N, seed=1, fingerprint=FINGERPRINT)
    candidate = ArtifactFactory(family=family, status="scoring")
    EvalRun.objects.create(artifact=candidate, dataset=dataset, status="succeeded", samples_total=N)
    other_context = {**FINGERPRINT, "max_length": 64}
    SnapshotFactory(artifact=candidate, dataset=dataset, n=N, seed=2, fingerprint=other_context)

    assert artifact_evaluate(artifact=candidate) == "incomparable"  # the default bits-per-byte threshold applies
