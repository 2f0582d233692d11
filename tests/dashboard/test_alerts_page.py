"""The Alerts page lists everything Home says needs attention, not only stored alerts: failed runs, judge
configurations whose calibration fails (the Judges page's rule) and thresholds overdue for review, each
linking to its page; the navigation marks each page's own section."""

import pytest
from django.urls import reverse
from django.utils import timezone

from evals.models import EvalRun, JudgeTrust, Threshold
from evals.selectors import evaluation_profile
from registry.models import Artifact
from tests.judges.conftest import judge_server  # noqa: F401  (fixture)
from tests.judges.test_judge_preference_verdicts import pairwise  # noqa: F401  (fixture)
from tests.labels.conftest import client_of, judged_candidate, reviewer_named  # noqa: F401  (fixture)
from tests.labels.test_judge_calibration import agreeing, label_all
from tests.labels.test_review_queue import browser_of

FAILURE = "RuntimeError: CUDA out of memory"


def section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start : page.index("</ul>", start)]


def test_the_alerts_page_lists_failed_runs_with_their_error(board, staff_page_client):
    failed = EvalRun.objects.get(status=EvalRun.Status.FAILED)

    page = staff_page_client.get(reverse("alert-list")).content.decode()

    runs = section(page, "attention-failed-runs")
    assert f'href="{failed.artifact.get_absolute_url()}"' in runs and FAILURE in runs


def test_a_failed_run_leaves_the_attention_lists_once_a_later_run_takes_over(board, staff_page_client):
    failed = EvalRun.objects.get(status=EvalRun.Status.FAILED)
    later = EvalRun.objects.create(
        artifact=failed.artifact, dataset=failed.dataset, kind=failed.kind, status=EvalRun.Status.FAILED
    )
    runs = section(staff_page_client.get(reverse("alert-list")).content.decode(), "attention-failed-runs")
    assert runs.count(f'href="{failed.artifact.get_absolute_url()}"') == 2  # failed twice: both listed

    EvalRun.objects.filter(pk=later.pk).update(status=EvalRun.Status.SUCCEEDED)
    for url in (reverse("alert-list"), reverse("home")):
        page = staff_page_client.get(url).content.decode()
        assert FAILURE not in page and 'id="attention-failed-runs"' not in page
    queues = staff_page_client.get(reverse("queues")).content.decode()
    assert FAILURE in queues  # the queues page keeps the history


def test_the_alerts_page_lists_thresholds_overdue_for_review(board, staff_page_client):
    page = staff_page_client.get(reverse("alert-list")).content.decode()

    overdue = section(page, "attention-overdue")
    assert f'href="{board.threshold.get_absolute_url()}"' in overdue
    assert f"Overdue since {board.threshold.review_by:%Y-%m-%d}" in overdue


def test_the_alerts_page_says_when_nothing_failed_and_no_threshold_is_overdue(board, staff_page_client):
    EvalRun.objects.filter(status=EvalRun.Status.FAILED).delete()
    Threshold.objects.filter(pk=board.threshold.pk).update(review_by=timezone.now().date())

    page = staff_page_client.get(reverse("alert-list")).content.decode()

    assert "No failed runs." in page and "Every threshold is within its review date." in page


@pytest.mark.parametrize("url", [reverse("home"), reverse("alert-list")])
def test_it_lists_an_uncalibrated_judge_with_why_linking_to_the_judges_page(judged_candidate, url):  # noqa: F811
    family, *_ = judged_candidate
    page = browser_of(reviewer_named("ada")).get(url).content.decode()

    judges = section(page, "attention-judges")
    assert f'href="{reverse("family-judges", args=[family.slug])}"' in judges
    assert "judge uncalibrated: no labels yet" in judges and "pairwise" in judges


def test_a_judge_that_agrees_with_the_reviewers_is_not_listed(judged_candidate):  # noqa: F811
    family, *_, artifact = judged_candidate
    profile = evaluation_profile(family)
    profile.judge = {**profile.judge, "min_labels": 5}
    profile.save()
    ada = reviewer_named("ada")
    label_all(client_of(ada), artifact, agreeing())

    page = browser_of(ada).get(reverse("alert-list")).content.decode()

    assert 'id="attention-judges"' not in page and "Every judge agrees with the reviewers" in page


def test_a_judge_trusted_by_staff_is_not_listed(judged_candidate, django_user_model):  # noqa: F811
    family, *_ = judged_candidate
    admin = django_user_model.objects.create_user("root", is_staff=True)
    browser = browser_of(admin)
    assert 'id="attention-judges"' in browser.get(reverse("home")).content.decode()
    page = browser.get(reverse("family-judges", args=[family.slug])).content.decode()
    assert "judge uncalibrated" in page
    key = page.split('name="configuration" value="', 1)[1].split('"', 1)[0]
    browser.post(reverse("family-judge-trust", args=[family.slug]), {"configuration": key, "reason": "Read."})
    assert JudgeTrust.objects.filter(configuration=key).exists()

    page = browser.get(reverse("home")).content.decode()

    assert 'id="attention-judges"' not in page


def current_nav(page: str) -> list[str]:
    """The links marked as the current page, in the main navigation and the account menu."""
    header = page[page.index('<header class="topbar"') : page.index("</header>")]
    links = header.split("<a ")[1:]
    return [link.split('href="', 1)[1].split('"', 1)[0] for link in links if 'aria-current="page"' in link]


def test_each_page_marks_its_own_section_in_the_navigation(board, staff_page_client):
    family = board.family.slug
    sections = {
        reverse("home"): [reverse("home")],
        reverse("alert-list"): [reverse("alert-list")],
        reverse("family-list"): [reverse("family-list")],
        reverse("family-detail", args=[family]): [reverse("family-list")],
        reverse("family-compare", args=[family]): [reverse("family-list")],
        reverse("family-traffic", args=[family]): [reverse("family-list")],
        reverse("family-judges", args=[family]): [reverse("family-list")],
        reverse("artifact-list"): [reverse("artifact-list")],
        board.production.get_absolute_url(): [reverse("artifact-list")],
        reverse("artifact-review", args=[board.production.pk]): [reverse("artifact-list")],
        reverse("threshold-list"): [reverse("threshold-list")],
        board.threshold.get_absolute_url(): [reverse("threshold-list")],
        reverse("queues"): [reverse("queues")],
        reverse("experiment-list"): [reverse("experiment-list")],
        reverse("api-tokens"): [reverse("api-tokens")],
    }
    for url, expected in sections.items():
        response = staff_page_client.get(url)
        assert response.status_code == 200, url
        assert current_nav(response.content.decode()) == expected, url


def test_a_judge_that_judged_only_archived_versions_is_not_listed(judged_candidate):  # noqa: F811
    *_, artifact = judged_candidate
    Artifact.objects.filter(pk=artifact.pk).update(stage=Artifact.Stage.ARCHIVED)

    page = browser_of(reviewer_named("ada")).get(reverse("alert-list")).content.decode()

    assert 'id="attention-judges"' not in page
