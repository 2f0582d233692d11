import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from evals.models import Threshold
from registry.models import Artifact, ModelFamily, PromotionEvent
from tests.conftest import broker_unreachable
from tests.factories import ArtifactFactory, FamilyFactory
from tests.registry.weights import safetensors_bytes


def test_it_refuses_anonymous_reads_and_writes(anonymous_client, family):
    assert anonymous_client.get("/api/v1/artifacts/").status_code == 401
    assert anonymous_client.get("/api/v1/families/").status_code == 401
    response = anonymous_client.post(
        "/api/v1/artifacts/",
        {
            "family": family.slug,
            "commit": "a" * 40,
            "weights": SimpleUploadedFile("w.safetensors", safetensors_bytes()),
        },
        format="multipart",
    )
    assert response.status_code == 401
    assert Artifact.objects.count() == 0


def test_it_creates_a_family_with_default_thresholds(staff_client, base_folder):
    response = staff_client.post(
        "/api/v1/families/",
        {"slug": "support-bot", "kind": "causal-lm", "base_path": str(base_folder), "datasets": ["golden"]},
        format="json",
    )

    assert response.status_code == 201, response.json()
    family = ModelFamily.objects.get(slug="support-bot")
    assert family.base_branch == "main" and family.datasets == ["golden"]
    threshold = Threshold.objects.get(family=family)
    assert (threshold.metric, threshold.rule, threshold.limit, threshold.severity) == (
        "bits_per_byte",
        "relative",
        0.02,
        "block",
    )


def test_it_lets_staff_patch_a_family_and_refuses_others(staff_client, api_client):
    family = FamilyFactory(slug="emb", kind="embedding")

    assert api_client.patch(f"/api/v1/families/{family.slug}/", {"datasets": ["x"]}, format="json").status_code == 403
    response = staff_client.patch(f"/api/v1/families/{family.slug}/", {"datasets": ["pairs"]}, format="json")

    assert response.status_code == 200
    family.refresh_from_db()
    assert family.datasets == ["pairs"]


def test_it_refuses_a_family_with_an_unknown_kind_or_missing_base(staff_client, tmp_path):
    assert staff_client.post("/api/v1/families/", {"slug": "x", "kind": "diffusion"}, format="json").status_code == 400
    response = staff_client.post(
        "/api/v1/families/", {"slug": "y", "kind": "causal-lm", "base_path": str(tmp_path)}, format="json"
    )
    assert response.status_code == 400
    assert "config.json" in str(response.json())


def test_it_lets_only_staff_promote_or_halt(api_client, staff_client):
    artifact = ArtifactFactory()

    assert api_client.post(f"/api/v1/artifacts/{artifact.pk}/promote/", {"reason": "looks fine"}).status_code == 403
    assert staff_client.post(f"/api/v1/artifacts/{artifact.pk}/halt/", {}).status_code == 400

    response = staff_client.post(f"/api/v1/artifacts/{artifact.pk}/promote/", {"reason": "Reviewed the samples"})

    assert response.status_code == 200
    artifact.refresh_from_db()
    assert (artifact.stage, artifact.status) == ("production", "promoted")
    event = artifact.events.get(action=PromotionEvent.Action.PROMOTE)
    assert event.reason == "Reviewed the samples" and event.actor.username == "staff" and not event.automatic


def test_promoting_archives_the_previous_production_artifact(staff_client):
    old = ArtifactFactory(stage="production", status="promoted")
    new = ArtifactFactory(family=old.family)

    staff_client.post(f"/api/v1/artifacts/{new.pk}/promote/", {"reason": "better"})

    old.refresh_from_db()
    assert old.stage == "archived"
    assert old.events.filter(action=PromotionEvent.Action.ARCHIVE).exists()


def test_it_filters_the_artifact_list(api_client):
    family = FamilyFactory(slug="filtered")
    wanted = ArtifactFactory(family=family, branch="feature", drift_flag="red")
    ArtifactFactory(family=family, branch="main", drift_flag="green")
    ArtifactFactory()

    body = api_client.get("/api/v1/artifacts/", {"family": "filtered", "drift_flag": "red", "branch": "feature"}).json()
    by_commit = api_client.get("/api/v1/artifacts/", {"commit": wanted.commit_sha[:10]}).json()

    assert [a["id"] for a in body["results"]] == [wanted.pk]
    assert [a["id"] for a in by_commit["results"]] == [wanted.pk]


def test_the_artifact_detail_has_tags_as_an_object(api_client):
    artifact = ArtifactFactory()
    artifact.tags.create(key="drift_flag", value="green")

    body = api_client.get(f"/api/v1/artifacts/{artifact.pk}/").json()

    assert body["tags"] == {"drift_flag": "green"}
    assert body["metrics"] == [] and body["verdicts"] == []


@pytest.mark.parametrize("count", [1, 50])
def test_the_artifact_list_runs_a_constant_number_of_queries(api_client, django_assert_num_queries, count):
    family = FamilyFactory()
    for artifact in ArtifactFactory.create_batch(count, family=family):
        artifact.tags.create(key="drift_flag", value="green")
    api_client.get("/api/v1/artifacts/")  # token lookup warms nothing; the count below is per request

    with django_assert_num_queries(4):
        response = api_client.get("/api/v1/artifacts/")
    assert response.json()["count"] == count


def test_healthz_reports_database_and_broker(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_answers_503_when_the_broker_is_unreachable(client, db):
    with broker_unreachable():
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "ok" and response.json()["broker"] != "ok"


def test_the_openapi_schema_and_docs_are_served(api_client, client, user):
    schema = api_client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/artifacts/" in schema.content
    client.force_login(user)
    assert client.get("/api/docs/").status_code == 200
