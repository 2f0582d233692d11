"""Thresholds as living records: validated, versioned with who and why, and back-testable."""

import datetime

from django.utils import timezone

from evals.models import Threshold
from evals.services import artifact_evaluate
from tests.pipeline.test_verdicts import candidate_with, setup  # noqa: F401 - the fixture is reused


def test_it_keeps_who_changed_a_threshold_and_why(staff_client, staff_user, setup):  # noqa: F811
    threshold = Threshold.objects.get(family=setup[0])

    response = staff_client.patch(
        f"/api/v1/thresholds/{threshold.pk}/",
        {"limit": 0.01, "change_reason": "Support answers must stay sharp"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    history = list(threshold.history.order_by("history_id"))
    assert [h.limit for h in history] == [0.02, 0.01]
    assert history[-1].history_user == staff_user
    assert history[-1].history_change_reason == "Support answers must stay sharp"
    assert response.json()["version"] == history[-1].history_id


def test_only_staff_may_change_thresholds(api_client, setup):  # noqa: F811
    threshold = Threshold.objects.get(family=setup[0])

    assert api_client.get("/api/v1/thresholds/").status_code == 200
    assert api_client.patch(f"/api/v1/thresholds/{threshold.pk}/", {"limit": 0.5}, format="json").status_code == 403


def test_a_threshold_needs_a_rationale_and_a_sane_limit(staff_client, db):
    no_reason = staff_client.post(
        "/api/v1/thresholds/", {"metric": "bits_per_byte", "limit": 0.02, "rationale": " "}, format="json"
    )
    bad_limit = staff_client.post(
        "/api/v1/thresholds/", {"metric": "bits_per_byte", "limit": 1.5, "rationale": "why not"}, format="json"
    )

    assert no_reason.status_code == 400 and "rationale" in no_reason.json()
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json()
    assert Threshold.objects.count() == 0


def test_a_new_threshold_is_due_for_review_in_ninety_days(staff_client, db):
    response = staff_client.post(
        "/api/v1/thresholds/", {"metric": "similarity", "limit": 0.05, "rationale": "Retrieval quality"}, format="json"
    )

    assert response.status_code == 201
    threshold = Threshold.objects.get()
    assert threshold.review_by == timezone.now().date() + datetime.timedelta(days=90)
    assert not threshold.overdue
    threshold.review_by = timezone.now().date() - datetime.timedelta(days=1)
    assert threshold.overdue


def test_the_backtest_shows_what_a_draft_limit_would_have_said(staff_client, setup):  # noqa: F811
    slightly_worse = candidate_with(setup, factor=1.01, noise=0.002)
    much_worse = candidate_with(setup, factor=1.05, noise=0.002)
    artifact_evaluate(artifact=slightly_worse)
    artifact_evaluate(artifact=much_worse)
    threshold = Threshold.objects.get(family=setup[0])

    current = staff_client.post(f"/api/v1/thresholds/{threshold.pk}/backtest/", {}, format="json").json()
    stricter = staff_client.post(f"/api/v1/thresholds/{threshold.pk}/backtest/", {"limit": 0.005}, format="json").json()

    assert current["counts"] == {"green": 1, "amber": 0, "red": 1}
    assert stricter["counts"] == {"green": 0, "amber": 0, "red": 2}
    changed = [row for row in stricter["artifacts"] if row["recorded"] != row["would_be"]]
    assert [row["artifact"] for row in changed] == [slightly_worse.pk]
    threshold.refresh_from_db()
    assert threshold.limit == 0.02
