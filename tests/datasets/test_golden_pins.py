"""Golden sets belong to the families that gate on them: a new version of one needs staff or an owner of
every such family, and each family scores the version it pins until someone moves the pin on purpose."""

import io

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from driftboard.roles import REVIEWER
from evals.models import GoldenDataset
from evals.services import artifact_runs_create, dataset_import
from registry.models import DatasetPinChange
from tests.conftest import token_client
from tests.factories import ArtifactFactory, FamilyFactory, UserFactory

FIRST = b'{"id": "a", "text": "Hello there."}\n{"id": "b", "text": "Goodbye."}\n'
SECOND = FIRST + b'{"id": "c", "text": "A new one."}\n'


def upload(client, name: str, content: bytes):
    return client.post(
        "/api/v1/datasets/", {"name": name, "file": SimpleUploadedFile("g.jsonl", content)}, format="multipart"
    )


def freeze(name: str, content: bytes) -> GoldenDataset:
    return dataset_import(name=name, filename="g.jsonl", source=io.BytesIO(content))


@pytest.fixture
def owner(db):
    return UserFactory(username="support-owner")


@pytest.fixture
def support(owner):
    family = FamilyFactory(slug="support", datasets=["shared-golden"])
    family.owners.add(owner)
    freeze("shared-golden", FIRST)
    return family


@pytest.fixture
def search(db):
    return FamilyFactory(slug="search", datasets=["shared-golden"])


def test_it_refuses_a_reader_a_new_version_of_a_golden_set_a_family_gates_on(api_client, support):
    response = upload(api_client, "shared-golden", SECOND)

    assert response.status_code == 403
    assert "Only staff or an owner of every family that gates on 'shared-golden'" in response.json()["detail"]
    assert response.json()["families"] == ["support"]
    assert list(GoldenDataset.objects.values_list("name", "version", "sample_count")) == [("shared-golden", 1, 2)]


def test_a_reader_still_uploads_a_set_no_family_gates_on_or_an_identical_copy(api_client, support):
    assert upload(api_client, "scratch", FIRST).status_code == 201
    same = upload(api_client, "shared-golden", FIRST)
    assert (same.status_code, same.json()["version"]) == (201, 1)


def test_an_owner_of_one_family_cannot_version_a_set_another_family_gates_on(owner, support, search):
    response = upload(token_client(owner), "shared-golden", SECOND)

    assert response.status_code == 403
    assert response.json()["families"] == ["search", "support"]
    assert GoldenDataset.objects.filter(name="shared-golden").count() == 1


def test_an_owner_of_every_family_versions_it_and_sees_the_families_that_keep_their_pin(owner, support, search):
    search.owners.add(owner)
    artifact_runs_create(artifact=ArtifactFactory(family=support))

    response = upload(token_client(owner), "shared-golden", SECOND)

    assert response.status_code == 201, response.json()
    assert response.json()["version"] == 2
    assert response.json()["families"] == [
        {"family": "search", "pinned_version": None},
        {"family": "support", "pinned_version": 1},
    ]


def test_another_familys_build_golden_cannot_version_a_shared_set(client, support, search):
    reviewer = UserFactory(username="search-reviewer")
    reviewer.groups.add(Group.objects.get(name=REVIEWER))
    search.owners.add(reviewer)
    client.force_login(reviewer)
    log = "\n".join(f'{{"prompt": "ticket {i}", "category": "faq"}}' for i in range(40)).encode()
    form = {"size": 10, "min_per_category": 1, "outliers": "0", "seed": 5}

    response = client.post(
        reverse("traffic-build-golden", args=["search"]),
        {**form, "file": SimpleUploadedFile("log.jsonl", log)},
        follow=True,
    )

    assert "not built: Only staff or an owner of every family that gates on" in response.content.decode()
    assert GoldenDataset.objects.filter(name="shared-golden").count() == 1


def test_a_family_scores_its_pinned_version_until_the_pin_is_moved(owner, support, staff_client):
    first = artifact_runs_create(artifact=ArtifactFactory(family=support))
    assert upload(staff_client, "shared-golden", SECOND).status_code == 201

    kept = artifact_runs_create(artifact=ArtifactFactory(family=support))
    moved = token_client(owner).post(
        "/api/v1/families/support/pin/",
        {"dataset": "shared-golden", "version": 2, "reason": "Adds the new ticket category."},
        format="json",
    )
    support.refresh_from_db()
    after = artifact_runs_create(artifact=ArtifactFactory(family=support))

    assert [r.dataset.version for r in first + kept + after] == [1, 1, 2]
    assert moved.status_code == 200, moved.json()
    assert moved.json()["dataset_pins"] == {"shared-golden": 2}
    changes = list(DatasetPinChange.objects.order_by("id").values_list("from_version", "to_version", "actor"))
    assert changes == [(None, 1, None), (1, 2, owner.pk)]


def test_only_staff_or_an_owner_moves_a_pin_and_only_to_a_version_that_exists(api_client, owner, support):
    freeze("shared-golden", SECOND)
    body = {"dataset": "shared-golden", "version": 2, "reason": "Newer tickets."}

    refused = api_client.post("/api/v1/families/support/pin/", body, format="json")
    missing = token_client(owner).post("/api/v1/families/support/pin/", {**body, "version": 9}, format="json")
    foreign = token_client(owner).post("/api/v1/families/support/pin/", {**body, "dataset": "other"}, format="json")

    assert refused.status_code == 403
    assert "Only staff or an owner of support" in refused.json()["detail"]
    assert (missing.status_code, missing.json()["version"]) == (400, "shared-golden has no golden version 9.")
    assert foreign.status_code == 400 and "dataset" in foreign.json()
    assert DatasetPinChange.objects.count() == 0
