"""Every API endpoint and page against every role: anonymous, reader, reviewer, admin and staff.

Readers read and submit (artifacts, datasets, experiment runs); reviewers also promote and halt,
and upload traffic logs; admins (members of the admin group, or staff) also edit families and
thresholds.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from safetensors.numpy import save as safetensors_save

from driftboard.roles import ADMIN, READER, REVIEWER, can_administer, can_review
from evals.models import Threshold
from registry.models import Artifact, ModelFamily, PromotionEvent
from tests.factories import (
    ArtifactFactory,
    DatasetFactory,
    EvalRunFactory,
    ExperimentFactory,
    ExperimentRunFactory,
    FamilyFactory,
    ThresholdFactory,
    UserFactory,
)
from tests.hardening.conftest import ROLES, api_client_as, page_client_as, role_user

# Expected status per role, in the order of ROLES: anonymous, reader, reviewer, admin, staff.
ANYONE_SIGNED_IN = (401, 200, 200, 200, 200)
SUBMITTERS = (401, 201, 201, 201, 201)
REVIEWERS = (401, 403, 200, 200, 200)
ADMINS_CREATE = (401, 403, 403, 201, 201)
ADMINS_CHANGE = (401, 403, 403, 200, 200)
PAGE_FOR_SIGNED_IN = (302, 200, 200, 200, 200)
PAGE_FOR_REVIEWERS = (302, 403, 200, 200, 200)
PAGE_ACTION_FOR_REVIEWERS = (302, 403, 302, 302, 302)


@dataclass
class World:
    family: ModelFamily
    artifact: Artifact
    threshold: Threshold
    dataset_id: int
    run_id: int
    experiment_slug: str


@pytest.fixture
def world(db) -> World:
    family = FamilyFactory(slug="support-bot")
    artifact = ArtifactFactory(family=family)
    dataset = DatasetFactory(name="golden", samples=3)
    experiment = ExperimentFactory(slug="loop")
    ExperimentRunFactory(experiment=experiment, sequence=1)
    ExperimentRunFactory(experiment=experiment, sequence=2, objective_value=0.9)
    return World(
        family=family,
        artifact=artifact,
        threshold=ThresholdFactory(family=family),
        dataset_id=dataset.pk,
        run_id=EvalRunFactory(artifact=artifact, dataset=dataset).pk,
        experiment_slug=experiment.slug,
    )


def weights_upload() -> io.BytesIO:
    upload = io.BytesIO(safetensors_save({"wte.weight": np.ones((4, 2), dtype=np.float32)}))
    upload.name = "model.safetensors"
    return upload


def dataset_upload() -> io.BytesIO:
    upload = io.BytesIO(b'{"text": "One golden sample."}\n{"text": "Another one."}\n')
    upload.name = "golden.jsonl"
    return upload


def traffic_upload() -> io.BytesIO:
    upload = io.BytesIO(b'{"text": "How do I reset my password?"}\n{"text": "Where is my invoice?"}\n')
    upload.name = "traffic.jsonl"
    return upload


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    url: Callable[[World], str]
    expected: tuple[int, ...]
    body: Callable[[World], dict] = field(default=lambda w: {})
    multipart: bool = False


API_CALLS = [
    Call("api schema", "get", lambda w: "/api/schema/", ANYONE_SIGNED_IN),
    Call("families list", "get", lambda w: "/api/v1/families/", ANYONE_SIGNED_IN),
    Call("family read", "get", lambda w: f"/api/v1/families/{w.family.slug}/", ANYONE_SIGNED_IN),
    Call(
        "family create",
        "post",
        lambda w: "/api/v1/families/",
        ADMINS_CREATE,
        lambda w: {"slug": "new-family", "kind": "causal-lm"},
    ),
    Call(
        "family change",
        "patch",
        lambda w: f"/api/v1/families/{w.family.slug}/",
        ADMINS_CHANGE,
        lambda w: {"description": "Answers support tickets."},
    ),
    Call("artifacts list", "get", lambda w: "/api/v1/artifacts/", ANYONE_SIGNED_IN),
    Call("artifact read", "get", lambda w: f"/api/v1/artifacts/{w.artifact.pk}/", ANYONE_SIGNED_IN),
    Call(
        "artifact submit",
        "post",
        lambda w: "/api/v1/artifacts/",
        (401, 202, 202, 202, 202),
        lambda w: {"family": w.family.slug, "commit": "abc1234", "weights": weights_upload()},
        multipart=True,
    ),
    Call(
        "artifact promote",
        "post",
        lambda w: f"/api/v1/artifacts/{w.artifact.pk}/promote/",
        REVIEWERS,
        lambda w: {"reason": "Reviewed the regressed samples."},
    ),
    Call(
        "artifact halt",
        "post",
        lambda w: f"/api/v1/artifacts/{w.artifact.pk}/halt/",
        REVIEWERS,
        lambda w: {"reason": "Legal text leaked into the fine-tune."},
    ),
    Call("datasets list", "get", lambda w: "/api/v1/datasets/", ANYONE_SIGNED_IN),
    Call("dataset read", "get", lambda w: f"/api/v1/datasets/{w.dataset_id}/", ANYONE_SIGNED_IN),
    Call(
        "dataset upload",
        "post",
        lambda w: "/api/v1/datasets/",
        SUBMITTERS,
        lambda w: {"name": "fresh-golden", "file": dataset_upload()},
        multipart=True,
    ),
    Call("traffic windows list", "get", lambda w: f"/api/v1/families/{w.family.slug}/traffic/", ANYONE_SIGNED_IN),
    Call(
        "traffic upload",
        "post",
        lambda w: f"/api/v1/families/{w.family.slug}/traffic/",
        (401, 403, 201, 201, 201),
        lambda w: {"file": traffic_upload()},
        multipart=True,
    ),
    Call("runs list", "get", lambda w: "/api/v1/runs/", ANYONE_SIGNED_IN),
    Call("run read", "get", lambda w: f"/api/v1/runs/{w.run_id}/", ANYONE_SIGNED_IN),
    Call("thresholds list", "get", lambda w: "/api/v1/thresholds/", ANYONE_SIGNED_IN),
    Call("threshold read", "get", lambda w: f"/api/v1/thresholds/{w.threshold.pk}/", ANYONE_SIGNED_IN),
    Call(
        "threshold create",
        "post",
        lambda w: "/api/v1/thresholds/",
        ADMINS_CREATE,
        lambda w: {"metric": "perplexity", "limit": 0.05, "rationale": "Perplexity may not rise by 5 %."},
    ),
    Call(
        "threshold change",
        "patch",
        lambda w: f"/api/v1/thresholds/{w.threshold.pk}/",
        ADMINS_CHANGE,
        lambda w: {"limit": 0.03, "change_reason": "Too many false alarms."},
    ),
    Call(
        "threshold backtest",
        "post",
        lambda w: f"/api/v1/thresholds/{w.threshold.pk}/backtest/",
        ANYONE_SIGNED_IN,
        lambda w: {"limit": 0.01},
    ),
    Call("experiments list", "get", lambda w: "/api/v1/experiments/", ANYONE_SIGNED_IN),
    Call("experiment read", "get", lambda w: f"/api/v1/experiments/{w.experiment_slug}/", ANYONE_SIGNED_IN),
    Call("experiment create", "post", lambda w: "/api/v1/experiments/", SUBMITTERS, lambda w: {"slug": "new-loop"}),
    Call("experiment runs", "get", lambda w: f"/api/v1/experiments/{w.experiment_slug}/runs/", ANYONE_SIGNED_IN),
    Call(
        "experiment run record",
        "post",
        lambda w: f"/api/v1/experiments/{w.experiment_slug}/runs/",
        SUBMITTERS,
        lambda w: {"commit": "abc1234", "status": "keep", "objective_value": 0.95},
    ),
]

PAGE_CALLS = [
    Call("home", "get", lambda w: reverse("home"), PAGE_FOR_SIGNED_IN),
    Call("family", "get", lambda w: reverse("family-detail", args=[w.family.slug]), PAGE_FOR_SIGNED_IN),
    Call("artifacts", "get", lambda w: reverse("artifact-list"), PAGE_FOR_SIGNED_IN),
    Call("artifact", "get", lambda w: reverse("artifact-detail", args=[w.artifact.pk]), PAGE_FOR_SIGNED_IN),
    Call("progress", "get", lambda w: reverse("artifact-progress", args=[w.artifact.pk]), PAGE_FOR_SIGNED_IN),
    Call(
        "promote",
        "post",
        lambda w: reverse("artifact-promote", args=[w.artifact.pk]),
        PAGE_ACTION_FOR_REVIEWERS,
        lambda w: {"reason": "Reviewed the regressed samples."},
    ),
    Call(
        "halt",
        "post",
        lambda w: reverse("artifact-halt", args=[w.artifact.pk]),
        PAGE_ACTION_FOR_REVIEWERS,
        lambda w: {"reason": "Legal text leaked into the fine-tune."},
    ),
    Call("thresholds", "get", lambda w: reverse("threshold-list"), PAGE_FOR_SIGNED_IN),
    Call("threshold", "get", lambda w: reverse("threshold-detail", args=[w.threshold.pk]), PAGE_FOR_SIGNED_IN),
    Call("queues", "get", lambda w: reverse("queues"), PAGE_FOR_SIGNED_IN),
    Call("experiments", "get", lambda w: reverse("experiment-list"), PAGE_FOR_SIGNED_IN),
    Call("experiment", "get", lambda w: reverse("experiment-detail", args=[w.experiment_slug]), PAGE_FOR_SIGNED_IN),
    Call("compare", "get", lambda w: reverse("experiment-compare", args=[w.experiment_slug]), PAGE_FOR_SIGNED_IN),
    Call("import", "get", lambda w: reverse("experiment-import", args=[w.experiment_slug]), PAGE_FOR_SIGNED_IN),
    Call(
        "register weights",
        "get",
        lambda w: reverse("experiment-run-register", args=[w.experiment_slug, 1]),
        PAGE_FOR_REVIEWERS,
    ),
    Call("django admin", "get", lambda w: reverse("admin:index"), (302, 302, 302, 200, 200)),
    Call("api docs", "get", lambda w: "/api/docs/", PAGE_FOR_SIGNED_IN),
]


def role_cases(calls: list[Call]) -> list:
    return [
        pytest.param(call, role, expected, id=f"{call.name}-{role}")
        for call in calls
        for role, expected in zip(ROLES, call.expected, strict=True)
    ]


@pytest.mark.parametrize(("call", "role", "expected"), role_cases(API_CALLS))
def test_it_answers_each_api_call_as_the_role_allows(world, call, role, expected):
    client = api_client_as(role)
    send = getattr(client, call.method)
    response = send(call.url(world), call.body(world), format="multipart" if call.multipart else "json")
    assert response.status_code == expected, response.content[:300]


@pytest.mark.parametrize(("call", "role", "expected"), role_cases(PAGE_CALLS))
def test_it_serves_each_page_as_the_role_allows(world, call, role, expected):
    client = page_client_as(role)
    response = getattr(client, call.method)(call.url(world), call.body(world))
    assert response.status_code == expected
    if role == "anonymous":
        assert response["Location"].startswith(reverse("login") if call.name != "django admin" else "/admin/login/")


@pytest.mark.parametrize("role", [REVIEWER, ADMIN])
def test_it_records_who_promoted_through_the_api(world, role):
    client = api_client_as(role)
    client.post(f"/api/v1/artifacts/{world.artifact.pk}/promote/", {"reason": "Reviewed."}, format="json")
    event = PromotionEvent.objects.get(artifact=world.artifact)
    assert (event.action, event.actor.username, event.reason) == ("promote", f"{role}-member", "Reviewed.")
    world.artifact.refresh_from_db()
    assert world.artifact.stage == Artifact.Stage.PRODUCTION


def test_it_changes_nothing_when_a_reader_tries_to_decide_or_configure(world):
    client = api_client_as(READER)
    client.post(f"/api/v1/artifacts/{world.artifact.pk}/halt/", {"reason": "No."}, format="json")
    client.patch(f"/api/v1/thresholds/{world.threshold.pk}/", {"limit": 0.5}, format="json")
    world.artifact.refresh_from_db()
    world.threshold.refresh_from_db()
    assert world.artifact.status == Artifact.Status.REGISTERED
    assert world.threshold.limit == ThresholdFactory.limit
    assert not PromotionEvent.objects.exists()


@pytest.mark.parametrize(("role", "sees_buttons"), [(READER, False), (REVIEWER, True), (ADMIN, True), ("staff", True)])
def test_it_shows_the_decision_buttons_to_reviewers_only(world, role, sees_buttons):
    page = page_client_as(role).get(reverse("artifact-detail", args=[world.artifact.pk])).content.decode()
    assert (reverse("artifact-halt", args=[world.artifact.pk]) in page) is sees_buttons
    assert ("Only reviewers and admins can promote or halt" in page) is not sees_buttons


@pytest.mark.parametrize(("role", "shown"), [(READER, READER), (REVIEWER, REVIEWER), (ADMIN, ADMIN), ("staff", ADMIN)])
def test_the_page_header_names_the_role_of_the_signed_in_user(world, role, shown):
    page = page_client_as(role).get(reverse("artifact-list")).content.decode()
    assert f'<span class="role">{shown}</span>' in page


def test_the_migration_creates_the_groups_and_lets_admins_edit_thresholds_in_the_django_admin(db):
    assert set(Group.objects.filter(name__in=ROLES).values_list("name", flat=True)) == {READER, REVIEWER, ADMIN}
    admin_staff = UserFactory(username="admin-staff", is_staff=True)
    admin_staff.groups.add(Group.objects.get(name=ADMIN))
    assert admin_staff.has_perms(["evals.change_threshold", "registry.add_modelfamily", "authtoken.add_tokenproxy"])
    assert not role_user(REVIEWER).has_perm("evals.change_threshold")


def test_it_counts_superusers_and_staff_as_admins_but_not_inactive_users(db):
    superuser = UserFactory(username="root", is_superuser=True)
    inactive_admin = role_user(ADMIN)
    inactive_admin.is_active = False
    assert can_administer(superuser) and can_review(superuser)
    assert not can_administer(inactive_admin) and not can_review(inactive_admin)
    assert can_review(role_user(REVIEWER)) and not can_administer(role_user(REVIEWER))
