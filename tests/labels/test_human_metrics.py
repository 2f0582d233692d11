"""Reviewers' labels as metrics: `human_preference` (pairwise) and `human_pass_rate` (pointwise) appear in
the verdict once an artifact has `min_labels` labelled items, computed one value per item; labels on a
held artifact judge it anew, so agreeing labels let its judge make it red; a real publish worker does it
after the labels API commits."""

import numpy as np
import pytest
from scipy import stats

from driftboard.queue_names import Queue
from evals.models import DriftVerdict, MetricSnapshot
from evals.services import artifact_evaluate
from evals.services.pipeline import artifact_labels_changed
from tests.labels.conftest import client_of, reviewer_named
from tests.labels.test_judge_calibration import PROMPTS, agreeing, label_all
from tests.pipeline.test_worker_pipeline import wait_for

# 12 reviewers prefer the candidate, 6 call a tie, 12 prefer the baseline.
MIXED = {i: "candidate" if i < 12 else "tie" if i < 18 else "baseline" for i in range(PROMPTS)}


def judged_and_held(artifact):
    artifact_evaluate(artifact=artifact)
    artifact.refresh_from_db()
    assert artifact.status == "held"
    return artifact


def test_human_preference_appears_once_enough_items_are_labelled(judged_candidate):
    *_, baseline, artifact = judged_candidate
    judged_and_held(artifact)
    ann = client_of(reviewer_named("ann"))
    label_all(ann, artifact, dict(list(MIXED.items())[:29]))

    artifact_labels_changed(artifact=artifact)
    assert not artifact.verdicts.filter(metric="human_preference").exists()

    label_all(ann, artifact, {29: MIXED[29]})
    artifact_labels_changed(artifact=artifact)

    verdict = artifact.verdicts.get(metric="human_preference")
    values = np.array([{"candidate": 1, "tie": 0, "baseline": -1}[MIXED[i]] for i in range(PROMPTS)], dtype=float)
    assert verdict.delta == pytest.approx(values.mean())
    assert verdict.p_value == pytest.approx(stats.ttest_1samp(values, 0.0).pvalue)
    assert verdict.ci_low <= values.mean() <= verdict.ci_high and verdict.baseline_id == baseline.pk
    assert any(f"{PROMPTS} items labelled by reviewers" in reason for reason in verdict.reasons)


def test_reviewers_of_one_item_count_once_as_their_mean(judged_candidate):
    *_, artifact = judged_candidate
    judged_and_held(artifact)
    label_all(client_of(reviewer_named("ann")), artifact, {i: "candidate" for i in range(PROMPTS)})
    label_all(client_of(reviewer_named("bob")), artifact, {i: "baseline" for i in range(10)})

    artifact_labels_changed(artifact=artifact)

    snapshot = MetricSnapshot.objects.get(artifact=artifact, metric="human_preference")
    positions, numerators, _ = snapshot.arrays()
    assert positions.tolist() == list(range(PROMPTS))
    assert numerators.tolist() == [0.0] * 10 + [1.0] * (PROMPTS - 10)
    assert snapshot.fingerprint["human"]["labels"] == PROMPTS + 10


def test_agreeing_labels_let_the_judge_make_the_held_artifact_red(judged_candidate):
    *_, artifact = judged_candidate
    judged_and_held(artifact)

    label_all(client_of(reviewer_named("ann")), artifact, agreeing())
    artifact_labels_changed(artifact=artifact)

    artifact.refresh_from_db()
    assert (artifact.drift_flag, artifact.status) == ("red", "halted")
    human = artifact.verdicts.get(metric="human_preference")
    assert human.delta == pytest.approx(-(PROMPTS - 6) / PROMPTS)


def test_pointwise_labels_give_the_pass_rate(judged_candidate):
    *_, artifact = judged_candidate
    judged_and_held(artifact)
    goods = {i: "good" if i % 3 == 0 else "bad" for i in range(PROMPTS)}
    for position, value in goods.items():
        body = {"artifact": artifact.pk, "sample": f"s{position}", "kind": "pointwise", "value": value}
        assert client_of(reviewer_named("cat")).post("/api/v1/labels/", body, format="json").status_code == 201

    artifact_labels_changed(artifact=artifact)

    verdict = artifact.verdicts.get(metric="human_pass_rate")
    assert verdict.candidate_value == pytest.approx(10 / PROMPTS)


def test_a_halted_artifact_keeps_its_decision_and_only_gains_the_human_row(judged_candidate):
    *_, artifact = judged_candidate
    judged_and_held(artifact)
    artifact.status = "halted"
    artifact.save(update_fields=["status"])
    label_all(client_of(reviewer_named("ann")), artifact, {i: "candidate" for i in range(PROMPTS)})

    artifact_labels_changed(artifact=artifact)

    artifact.refresh_from_db()
    assert artifact.status == "halted"
    assert artifact.verdicts.get(metric="human_preference").delta == pytest.approx(1.0)


@pytest.mark.worker
def test_a_real_publish_worker_writes_the_human_metric_after_the_labels_commit(
    celery_worker_factory, transactional_db, judged_candidate
):
    *_, artifact = judged_candidate
    judged_and_held(artifact)
    celery_worker_factory(queues=(Queue.PUBLISH,))

    label_all(client_of(reviewer_named("ann")), artifact, MIXED)

    wait_for(
        lambda: DriftVerdict.objects.filter(artifact=artifact, metric="human_preference").exists(),
        timeout=60,
        message="the human preference verdict",
    )
    assert MetricSnapshot.objects.get(artifact=artifact, metric="human_preference").n == PROMPTS
