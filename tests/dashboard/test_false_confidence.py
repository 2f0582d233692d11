"""False confidence: of a family's versions whose commit's CI passed, those Driftboard found red or reviewers
labelled worse than their baseline — on the family's page and at /api/v1/families/{slug}/false-confidence/.

CI conclusions arrive as the forge sends them: signed deliveries to the real webhook endpoints."""

from dataclasses import dataclass

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evals import selectors
from evals.models import Label
from registry.models import Artifact, ModelFamily
from tests.factories import ArtifactFactory, DatasetFactory, FamilyFactory, UserFactory
from tests.webhooks.deliveries import GITHUB_SECRET, payload, send_github_json

HOSTILE_NAME = '<script>alert("ci")</script>'
RED = Artifact.DriftFlag.RED
GREEN = Artifact.DriftFlag.GREEN


@pytest.fixture(autouse=True)
def github_webhook_secret(settings):
    settings.DRIFTBOARD_GITHUB_WEBHOOK_SECRET = GITHUB_SECRET


def ci_reports(client, artifact: Artifact, conclusion: str, *, workflow: str = "Train and test") -> None:
    data = payload("github_workflow_run_completed")
    data["workflow_run"].update(head_sha=artifact.commit_sha, conclusion=conclusion, name=workflow)
    assert send_github_json(client, data, "workflow_run").status_code == 200


def labels(artifact: Artifact, *values: str, kind: str = Label.Kind.PAIRWISE) -> None:
    """One reviewer's label per value, each on its own sample."""
    samples = DatasetFactory(samples=len(values)).samples.order_by("position")
    for position, (value, sample) in enumerate(zip(values, samples, strict=True)):
        Label.objects.create(
            reviewer=UserFactory(username=f"reviewer-{artifact.pk}-{position}"),
            artifact=artifact,
            sample=sample,
            kind=kind,
            value=value,
            weights_sha256=artifact.sha256,
            prompt_sha256="p" * 64,
            config_sha256="c" * 64,
            chat_template_sha256="",
            engine_version=1,
        )


@dataclass
class Family:
    family: ModelFamily
    versions: dict[str, Artifact]


@pytest.fixture
def family(db, client) -> Family:
    """Eight versions: five passed CI, of which three regressed; three did not pass CI and never count."""
    family = FamilyFactory(slug="support-assistant")
    made = {
        name: ArtifactFactory(family=family, version=number, drift_flag=flag)
        for number, (name, flag) in enumerate(
            [
                ("clean", GREEN),
                ("red", RED),
                ("labelled_worse", GREEN),
                ("red_and_labelled_worse", RED),
                ("ci_failed", RED),
                ("one_check_failed", RED),
                ("no_ci", RED),
                ("labels_tied", GREEN),
            ],
            start=1,
        )
    }
    for name in ("clean", "red", "labelled_worse", "red_and_labelled_worse", "one_check_failed", "labels_tied"):
        ci_reports(client, made[name], "success")
    ci_reports(client, made["red"], "success", workflow=HOSTILE_NAME)
    ci_reports(client, made["ci_failed"], "failure")
    ci_reports(client, made["one_check_failed"], "failure", workflow="Lint")
    labels(made["labelled_worse"], "baseline", "baseline", "candidate", "tie")
    labels(made["red_and_labelled_worse"], "baseline")
    labels(made["labels_tied"], "baseline", "candidate")
    labels(made["clean"], "bad", "bad", kind=Label.Kind.POINTWISE)
    labels(made["ci_failed"], "baseline")
    return Family(family, made)


def test_it_counts_the_versions_ci_passed_that_regressed(family):
    figure = selectors.false_confidence(family.family)

    assert (figure.checks_recorded, figure.passed_ci, figure.regressed) == (True, 5, 3)
    assert figure.rate == pytest.approx(0.6)
    assert [(v.artifact.version, v.red, v.labelled_worse) for v in figure.versions] == [
        (4, True, True),
        (3, False, True),
        (2, True, False),
    ]
    labelled = figure.versions[1]
    assert (labelled.baseline_preferred, labelled.candidate_preferred) == (2, 1)


def test_another_familys_checks_and_labels_do_not_count(family, client):
    other = ArtifactFactory(family=FamilyFactory(), drift_flag=RED)
    ci_reports(client, other, "success")

    assert selectors.false_confidence(family.family).passed_ci == 5


def test_a_later_failed_run_takes_a_version_out_of_the_count(family, client):
    ci_reports(client, family.versions["red"], "failure")

    figure = selectors.false_confidence(family.family)

    assert (figure.passed_ci, figure.regressed) == (4, 2)


def test_the_family_page_states_the_figure_and_lists_the_versions(family, reader_client):
    page = reader_client.get(f"/families/{family.family.slug}/").content.decode()

    assert "3 of 5 versions passed CI but regressed (60 %)" in page
    section = page[page.index('id="false-confidence"') :]
    for name in ("red", "labelled_worse", "red_and_labelled_worse"):
        assert f'href="{family.versions[name].get_absolute_url()}"' in section
    for name in ("clean", "ci_failed", "one_check_failed", "no_ci", "labels_tied"):
        assert f'data-artifact="{family.versions[name].pk}"' not in section
    assert "labelled worse: 2 prefer the baseline, 1 the candidate" in section


def test_the_family_page_escapes_a_hostile_check_name(family, reader_client):
    page = reader_client.get(f"/families/{family.family.slug}/").content.decode()

    assert HOSTILE_NAME not in page
    assert "&lt;script&gt;alert(&quot;ci&quot;)&lt;/script&gt;" in page


def test_without_ci_conclusions_the_page_says_how_to_send_them(db, reader_client):
    family = FamilyFactory()
    ArtifactFactory(family=family, drift_flag=RED)

    page = reader_client.get(f"/families/{family.slug}/").content.decode()

    assert "No CI conclusions were recorded" in page
    for words in ("Check suites", "Workflow runs", "/hooks/github/", "Pipeline events", "/hooks/gitlab/"):
        assert words in page
    assert "passed CI but regressed" not in page


def test_the_api_gives_the_figure(family, api_client):
    response = api_client.get(f"/api/v1/families/{family.family.slug}/false-confidence/")

    assert response.status_code == 200
    versions = family.versions
    assert response.json() == {
        "passed_ci": 5,
        "regressed": 3,
        "rate": pytest.approx(0.6),
        "versions": [
            {
                "artifact": versions[name].pk,
                "version": versions[name].version,
                "commit": versions[name].commit_sha,
                "red": red,
                "labelled_worse": worse,
            }
            for name, red, worse in [
                ("red_and_labelled_worse", True, True),
                ("labelled_worse", False, True),
                ("red", True, False),
            ]
        ],
    }


def test_the_api_gives_no_rate_when_no_version_passed_ci(db, api_client):
    family = FamilyFactory()
    ArtifactFactory(family=family, drift_flag=RED)

    response = api_client.get(f"/api/v1/families/{family.slug}/false-confidence/")

    assert response.json() == {"passed_ci": 0, "regressed": 0, "rate": None, "versions": []}


def test_the_api_refuses_strangers_and_unknown_families(family, api_client, client):
    assert client.get(f"/api/v1/families/{family.family.slug}/false-confidence/").status_code in (401, 403)
    assert api_client.get("/api/v1/families/no-such-family/false-confidence/").status_code == 404


def test_the_family_detail_is_unchanged(family, api_client):
    detail = api_client.get(f"/api/v1/families/{family.family.slug}/").json()

    assert not {"passed_ci", "regressed", "false_confidence"} & set(detail)


def test_it_runs_the_same_queries_however_many_versions_regressed(family, api_client, client):
    url = f"/api/v1/families/{family.family.slug}/false-confidence/"
    with CaptureQueriesContext(connection) as first:
        api_client.get(url)
    for number in range(20, 30):
        artifact = ArtifactFactory(family=family.family, version=number, drift_flag=RED)
        ci_reports(client, artifact, "success")
        labels(artifact, "baseline")

    with CaptureQueriesContext(connection) as second:
        assert len(api_client.get(url).json()["versions"]) == 13

    assert len(second.captured_queries) == len(first.captured_queries)
