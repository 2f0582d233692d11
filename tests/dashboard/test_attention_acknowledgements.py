"""Failed runs, uncalibrated judges and overdue thresholds are acknowledged from the Alerts page by a
reviewer (who, when, note): the item leaves "Needs attention" on the Alerts page and Home, the Alerts
page keeps what was acknowledged, a new cause is listed again, and readers cannot acknowledge."""

import datetime
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from evals.models import Acknowledgement, EvalRun, Threshold
from tests.dashboard.test_alerts_page import FAILURE
from tests.judges.conftest import judge_server  # noqa: F401  (fixture)
from tests.judges.test_judge_preference_verdicts import pairwise  # noqa: F401  (fixture)
from tests.labels.conftest import judged_candidate, reviewer_named  # noqa: F401  (fixture)
from tests.labels.test_review_queue import browser_of

NOTE = "<b>OOM</b> on the old runner; moved to the new pool."


def forms_of(page: str, kind: str) -> list[str]:
    """The keys of the acknowledgement forms of one kind on the page."""
    action = reverse("attention-acknowledge", args=[kind])
    return re.findall(
        rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrfmiddlewaretoken"[^>]*>\s*'
        r'<input type="hidden" name="key" value="([^"]+)"',
        page,
    )


def acknowledge(client, kind: str, key: str, note: str = NOTE):
    return client.post(reverse("attention-acknowledge", args=[kind]), {"key": key, "note": note})


def test_a_reviewer_acknowledges_a_failed_run_and_it_leaves_the_lists(board, staff_page_client, staff_user):
    failed = EvalRun.objects.get(status=EvalRun.Status.FAILED)
    page = staff_page_client.get(reverse("alert-list")).content.decode()
    assert forms_of(page, "run") == [str(failed.pk)]

    response = acknowledge(staff_page_client, "run", str(failed.pk))

    assert response.status_code == 302
    ack = Acknowledgement.objects.get(kind="run", key=str(failed.pk))
    assert ack.acknowledged_by == staff_user and ack.note == NOTE
    for url in (reverse("alert-list"), reverse("home")):
        assert FAILURE not in staff_page_client.get(url).content.decode()
    page = staff_page_client.get(reverse("alert-list")).content.decode()
    listed = page[page.index('id="acknowledgements"') :]
    assert "Failed run" in listed and "run failed" in listed and "&lt;b&gt;OOM&lt;/b&gt;" in listed
    assert "<b>OOM</b>" not in page  # the note is escaped

    again = EvalRun.objects.create(
        artifact=failed.artifact, dataset=failed.dataset, kind=failed.kind, status=EvalRun.Status.FAILED, error=FAILURE
    )
    assert forms_of(staff_page_client.get(reverse("alert-list")).content.decode(), "run") == [str(again.pk)]


def test_an_overdue_threshold_acknowledged_comes_back_when_overdue_from_a_later_date(board, staff_page_client):
    threshold = board.threshold
    [key] = forms_of(staff_page_client.get(reverse("alert-list")).content.decode(), "threshold")
    assert key == f"{threshold.pk}:{threshold.review_by:%Y-%m-%d}"

    acknowledge(staff_page_client, "threshold", key)

    assert 'id="attention-overdue"' not in staff_page_client.get(reverse("home")).content.decode()
    later = timezone.now().date() - datetime.timedelta(days=1)
    assert later != threshold.review_by
    Threshold.objects.filter(pk=threshold.pk).update(review_by=later)
    assert forms_of(staff_page_client.get(reverse("alert-list")).content.decode(), "threshold") == [
        f"{threshold.pk}:{later:%Y-%m-%d}"
    ]


def test_an_uncalibrated_judge_acknowledged_leaves_the_lists(judged_candidate):  # noqa: F811
    family, *_ = judged_candidate
    browser = browser_of(reviewer_named("ada"))
    [key] = forms_of(browser.get(reverse("alert-list")).content.decode(), "judge")
    assert key.startswith(f"{family.pk}:")

    acknowledge(browser, "judge", key, note="")

    assert 'id="attention-judges"' not in browser.get(reverse("home")).content.decode()
    assert Acknowledgement.objects.get(kind="judge").title.startswith(f"{family.slug}: ")


def test_only_what_is_listed_can_be_acknowledged_and_only_once(board, staff_page_client):
    failed = EvalRun.objects.get(status=EvalRun.Status.FAILED)
    succeeded = EvalRun.objects.exclude(status=EvalRun.Status.FAILED).first()

    for kind, key in (("run", str(succeeded.pk)), ("run", "nonsense"), ("kind-unknown", str(failed.pk))):
        response = acknowledge(staff_page_client, kind, key)
        assert response.status_code == 302 and not Acknowledgement.objects.exists()
    acknowledge(staff_page_client, "run", str(failed.pk))
    followed = acknowledge(staff_page_client, "run", str(failed.pk))
    assert followed.status_code == 302 and Acknowledgement.objects.count() == 1
    assert "no longer listed" in staff_page_client.get(reverse("alert-list")).content.decode()


@pytest.mark.parametrize("note", ["x" * 2001])
def test_a_reader_cannot_acknowledge_and_a_long_note_is_refused(board, reader_client, staff_page_client, note):
    failed = EvalRun.objects.get(status=EvalRun.Status.FAILED)
    assert forms_of(reader_client.get(reverse("alert-list")).content.decode(), "run") == []
    assert acknowledge(reader_client, "run", str(failed.pk)).status_code == 403
    acknowledge(staff_page_client, "run", str(failed.pk), note=note)
    assert not Acknowledgement.objects.exists()
