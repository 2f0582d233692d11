"""Labels over the API: post one (and again to change it, history kept), the contract's fields,
filters and paging, roles, CSV/JSONL export and re-import, bulk errors by row, escaping-free data,
and labels kept when the artifact is archived."""

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from evals.models import Label
from registry.models import Artifact
from tests.factories import UserFactory
from tests.labels.conftest import client_of, reviewer_named

HOSTILE = '<script>alert("x")</script>'


def post(client, artifact, sample, value, kind="pairwise", **extra):
    body = {"artifact": artifact.pk, "sample": sample, "kind": kind, "value": value, **extra}
    return client.post("/api/v1/labels/", body, format="json")


def test_it_stores_a_pairwise_label_against_the_answers_keys(judged_candidate):
    family, dataset, baseline, artifact = judged_candidate
    client = client_of(reviewer_named("ann"))

    response = post(client, artifact, "s7", "baseline", note=HOSTILE)

    assert response.status_code == 201, response.json()
    assert response.json()["sample"] == "s7" and response.json()["note"] == HOSTILE
    label = Label.objects.get()
    assert (label.kind, label.value, label.sample.position) == ("pairwise", "baseline", 7)
    assert label.weights_sha256 == artifact.sha256 and label.baseline_weights_sha256 == baseline.sha256
    assert label.prompt_sha256 and label.config_sha256 and label.engine_version


def test_posting_again_updates_the_label_and_keeps_its_history(judged_candidate):
    *_, artifact = judged_candidate
    client = client_of(reviewer_named("ann"))
    post(client, artifact, "s3", "candidate")

    response = post(client, artifact, "s3", "tie")

    assert response.status_code == 200
    label = Label.objects.get()
    assert label.value == "tie"
    assert [h.value for h in label.history.order_by("history_date")] == ["candidate", "tie"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": "better"}, "value"),
        ({"kind": "ranked"}, "kind"),
        ({"sample": "no-such-sample"}, "sample"),
        ({"kind": "pointwise", "value": "good", "rating": 11}, "rating"),
        ({"kind": "pairwise", "value": "tie", "rating": 5}, "rating"),
        ({"artifact": 10**9}, "artifact"),
    ],
)
def test_it_refuses_a_bad_label_naming_the_field(judged_candidate, body, field):
    *_, artifact = judged_candidate
    full = {"artifact": artifact.pk, "sample": "s1", "kind": "pairwise", "value": "tie", **body}

    response = client_of(reviewer_named("ann")).post("/api/v1/labels/", full, format="json")

    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Label.objects.exists()


def test_readers_read_and_only_reviewers_and_staff_label(judged_candidate, anonymous_client):
    *_, artifact = judged_candidate
    reader = client_of(UserFactory(username="reader"))
    staff = client_of(UserFactory(username="boss", is_staff=True))

    assert post(reader, artifact, "s1", "tie").status_code == 403
    assert post(anonymous_client, artifact, "s1", "tie").status_code in (401, 403)
    assert post(staff, artifact, "s1", "tie").status_code == 201
    assert reader.get(f"/api/v1/labels/?artifact={artifact.pk}").json()["count"] == 1
    assert anonymous_client.get("/api/v1/labels/").status_code in (401, 403)


def test_it_lists_with_filters_and_a_count(judged_candidate):
    family, *_, artifact = judged_candidate
    ann, bob = client_of(reviewer_named("ann")), client_of(reviewer_named("bob"))
    for i in range(5):
        post(ann, artifact, f"s{i}", "baseline")
    post(bob, artifact, "s0", "tie")

    listed = ann.get(f"/api/v1/labels/?artifact={artifact.pk}&page_size=2").json()
    assert listed["count"] == 6 and len(listed["results"]) == 2 and listed["next"]
    assert ann.get("/api/v1/labels/?reviewer=bob").json()["count"] == 1
    assert ann.get(f"/api/v1/labels/?family={family.slug}&kind=pointwise").json()["count"] == 0
    assert ann.get("/api/v1/labels/?artifact=x").status_code == 400


def test_the_csv_and_jsonl_exports_round_trip_through_the_bulk_import(judged_candidate):
    family, *_, artifact = judged_candidate
    ann = client_of(reviewer_named("ann"))
    post(ann, artifact, "s1", "baseline", note=HOSTILE)
    post(ann, artifact, "s2", "tie", note="line one\nline, two")

    exported_csv = ann.get(f"/api/v1/families/{family.slug}/labels.csv").content.decode()
    exported_jsonl = ann.get(f"/api/v1/families/{family.slug}/labels.jsonl").content.decode()
    rows = list(csv.DictReader(io.StringIO(exported_csv)))
    assert [(r["sample"], r["value"], r["note"]) for r in rows] == [
        ("s1", "baseline", HOSTILE),
        ("s2", "tie", "line one\nline, two"),
    ]
    assert [json.loads(line)["note"] for line in exported_jsonl.splitlines()] == [HOSTILE, "line one\nline, two"]

    bob = client_of(reviewer_named("bob"))
    for name, body in (("labels.csv", exported_csv), ("labels.jsonl", exported_jsonl)):
        upload = SimpleUploadedFile(name, body.encode())
        response = bob.post("/api/v1/labels/bulk/", {"file": upload}, format="multipart")
        assert response.status_code == 201, response.json()
    bobs = Label.objects.filter(reviewer__username="bob").order_by("sample__position")
    assert [(b.sample.sample_id, b.value, b.note) for b in bobs] == [(r["sample"], r["value"], r["note"]) for r in rows]


def test_a_bulk_import_with_bad_rows_stores_nothing_and_numbers_the_errors(judged_candidate):
    *_, artifact = judged_candidate
    rows = [
        {"artifact": artifact.pk, "sample": "s1", "kind": "pairwise", "value": "tie"},
        {"artifact": artifact.pk, "sample": "s2", "kind": "pairwise", "value": "maybe"},
        {"artifact": artifact.pk, "sample": "nope", "kind": "pairwise", "value": "tie"},
        {"sample": "s3", "kind": "pairwise", "value": "tie"},
    ]

    response = client_of(reviewer_named("ann")).post("/api/v1/labels/bulk/", rows, format="json")

    assert response.status_code == 400
    errors = {row["row"]: row["errors"] for row in response.json()["rows"]}
    assert set(errors) == {2, 3, 4}
    assert "value" in errors[2] and "sample" in errors[3] and "artifact" in errors[4]
    assert not Label.objects.exists()


def test_a_broken_jsonl_line_is_named(judged_candidate):
    upload = SimpleUploadedFile("labels.jsonl", b'{"sample": "s1"}\n{not json\n')

    response = client_of(reviewer_named("ann")).post("/api/v1/labels/bulk/", {"file": upload}, format="multipart")

    assert response.status_code == 400 and "Line 2" in str(response.json()["file"])


def test_labels_stay_when_the_artifact_is_archived(judged_candidate):
    *_, artifact = judged_candidate
    post(client_of(reviewer_named("ann")), artifact, "s1", "baseline")

    Artifact.objects.filter(pk=artifact.pk).update(stage=Artifact.Stage.ARCHIVED)

    assert Label.objects.filter(artifact=artifact).count() == 1
