"""In the admin, a threshold is saved only with a reason, which its history keeps with who saved it."""

import pytest

from evals.models import Threshold
from tests.factories import FamilyFactory, UserFactory

pytestmark = pytest.mark.django_db


def form_data(threshold: Threshold, **changes) -> dict:
    data = {
        "scope": threshold.scope,
        "family": threshold.family_id or "",
        "dataset_name": threshold.dataset_name,
        "metric": threshold.metric,
        "rule": threshold.rule,
        "limit": threshold.limit,
        "band_window": threshold.band_window or "",
        "severity": threshold.severity,
        "enabled": "on" if threshold.enabled else "",
        "rationale": threshold.rationale,
        "owner": threshold.owner,
        "review_by": threshold.review_by.isoformat(),
    }
    if threshold.band_robust:
        data["band_robust"] = "on"
    return {**data, **changes}


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def threshold():
    from evals.services.thresholds import threshold_save

    family = FamilyFactory()
    return threshold_save(
        threshold=Threshold(
            family=family,
            metric="bits_per_byte",
            rule="relative",
            limit=0.02,
            severity="block",
            owner="ml-team",
            rationale="Gate on language modelling.",
        ),
        user=None,
        reason="Default",
    )


def test_a_change_without_a_reason_is_refused_and_nothing_changes(admin_client, threshold):
    response = admin_client.post(f"/admin/evals/threshold/{threshold.pk}/change/", form_data(threshold, limit=0.05))

    assert response.status_code == 200 and "change_reason" in response.context["adminform"].form.errors
    threshold.refresh_from_db()
    assert threshold.limit == 0.02 and threshold.history.count() == 1


def test_a_change_with_a_reason_is_kept_in_the_history_with_who(admin_client, threshold):
    data = form_data(threshold, limit=0.05, change_reason="Too many false reds on v12–v15")

    response = admin_client.post(f"/admin/evals/threshold/{threshold.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    latest = threshold.history.order_by("-history_id").first()
    assert (latest.limit, latest.history_change_reason, latest.history_user.username) == (
        0.05,
        "Too many false reds on v12–v15",
        "root",
    )
