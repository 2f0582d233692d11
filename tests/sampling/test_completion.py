"""After an early stop, the off-peak queue scores the rest; the verdict is re-checked on the full set."""

import logging

import numpy as np
import pytest
from django.urls import reverse

from evals.comments import comment_render
from evals.models import EvalRun, MetricSnapshot, SampleResult
from evals.services.thresholds import threshold_save
from registry.models import Alert
from tests.factories import EvalRunFactory
from tests.sampling.conftest import register, work


@pytest.fixture
def early_red(baseline, demo_imports):
    """The drifted model, halted on part of the golden set."""
    artifact = register(baseline.family, demo_imports["drifted"], "b")
    (run,) = work()
    assert run.sampling["stopped_early"] and artifact.verdicts.get(metric="bits_per_byte").outcome == "red"
    return artifact


def completion_of(artifact) -> EvalRun:
    return artifact.runs.get(kind="completion")


def test_it_queues_the_rest_off_peak_only_while_scoring_is_idle(early_red, settings):
    settings.DRIFTBOARD_OFFPEAK_WINDOW = ""
    sequential = early_red.runs.get(kind="sequential")
    completion = completion_of(early_red)
    assert (completion.queue, completion.status) == ("offpeak", "pending")
    assert completion.samples_total == sequential.samples_total - sequential.samples_done

    busy = EvalRunFactory(status="queued")
    assert work("offpeak") == [] and completion_of(early_red).status == "pending"
    busy.delete()
    assert [run.pk for run in work("offpeak")] == [completion.pk]


def test_the_completion_scores_exactly_the_samples_left_and_fills_the_snapshot(early_red, truth):
    sequential = early_red.runs.get(kind="sequential")

    (completion,) = work("offpeak")

    left = sequential.samples_total - sequential.samples_done
    assert (completion.status, completion.samples_done, completion.cached_samples) == ("succeeded", left, 0)
    assert completion.forward_passes > 0
    assert SampleResult.objects.filter(weights_sha256=early_red.sha256).count() == sequential.samples_total
    snapshot = MetricSnapshot.objects.get(artifact=early_red, metric="bits_per_byte")
    positions, numerators, denominators = snapshot.arrays()
    assert snapshot.complete and np.array_equal(positions, np.arange(sequential.samples_total))
    np.testing.assert_allclose(numerators, truth.nll_bits["drifted"], rtol=1e-6)
    np.testing.assert_array_equal(denominators, truth.bytes)


def test_a_round_trip_keeps_the_early_verdict_and_completes_the_record(early_red, truth, caplog):
    early = early_red.verdicts.get(metric="bits_per_byte")

    with caplog.at_level(logging.ERROR):
        work("offpeak")

    full = early_red.verdicts.get(metric="bits_per_byte")
    assert (full.outcome, full.previous_outcome, full.stopped_early) == ("red", "", False)
    assert full.samples_used == full.samples_total
    assert full.delta == pytest.approx(truth.delta("drifted"), rel=1e-6)
    assert early.ci_low <= full.delta <= early.ci_high
    assert not early_red.tags.filter(key="verdict_changed").exists()
    assert not caplog.records
    early_red.refresh_from_db()
    assert (early_red.drift_flag, early_red.status) == ("red", "halted")


def test_a_verdict_changed_by_the_full_set_is_flagged_loudly(early_red, caplog):
    threshold = early_red.family.thresholds.get(metric="bits_per_byte")
    threshold.limit = 0.5
    threshold_save(threshold=threshold, user=None, reason="Tolerate the fine-tuning's drift")

    with caplog.at_level(logging.ERROR):
        work("offpeak")

    verdict = early_red.verdicts.get(metric="bits_per_byte")
    assert (verdict.previous_outcome, verdict.outcome) == ("red", "green")
    assert "red → green" in early_red.tags.get(key="verdict_changed").value
    assert Alert.objects.filter(artifact=early_red, title__contains="verdict changed").exists()
    assert any("changed on the full golden set" in r.getMessage() for r in caplog.records)
    early_red.refresh_from_db()
    assert early_red.drift_flag == "green"


def test_the_page_and_the_pull_request_comment_say_how_much_was_used(early_red, client, user):
    verdict = early_red.verdicts.get(metric="bits_per_byte")
    note = f"{100 * verdict.samples_used / verdict.samples_total:.0f} % of the golden set"
    client.force_login(user)

    page = client.get(reverse("artifact-detail", args=[early_red.pk])).content.decode()
    comment = comment_render(artifact=early_red, marker="<!-- driftboard -->", page_url="http://board/")

    assert f"decided on {note} (n = {verdict.samples_used} of {verdict.samples_total})" in page
    assert f"Decided on {note} (n = {verdict.samples_used} of {verdict.samples_total})" in comment
