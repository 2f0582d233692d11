"""What a compared window does: outcome and reasons, the production artifact's tag and alert, traffic
thresholds, the next candidate's PR comment, promotion to golden, the traffic tab and the API detail."""

import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from driftboard.dashboard.selectors import family_series
from evals.comments import comment_render
from evals.models import Threshold
from evals.selectors import dataset_latest, thresholds_in_force, traffic_surprising
from evals.services import dataset_import
from evals.services.traffic import traffic_import, traffic_specs, traffic_window_promote
from registry.models import Alert, Artifact
from tests.factories import (
    ArtifactFactory,
    DatasetFactory,
    FamilyFactory,
    SnapshotFactory,
    ThresholdFactory,
    UserFactory,
    VerdictFactory,
    float_bytes,
)
from tests.traffic.board import HOSTILE, T0, build_traffic_board, window_compared


@pytest.fixture
def board(db, tmp_path):
    return build_traffic_board(tmp_path)


def test_it_keeps_a_window_like_the_golden_set_green_and_flags_a_moved_one_red(board):
    assert board.steady.outcome == "green", board.steady.reasons
    assert board.moved.outcome == "red"
    assert any("'code'" in reason for reason in board.moved.reasons)
    assert board.moved.statistics["new_categories"] == ["code"]
    assert board.moved.reference_dataset == board.golden
    tags = dict(board.production.tags.values_list("key", "value"))
    assert tags["traffic_drift"] == "red" and tags["traffic_drift.window"] == "2"
    alert = Alert.objects.get(artifact=board.production)
    assert "traffic drift red on window 2" in alert.title and alert.payload["window"] == 2


def test_it_compares_with_a_chosen_reference_window(board):
    board.moved.reference_window = board.steady
    board.moved.save()
    window = window_compared(run=board.moved.run)
    assert window.reference_dataset == board.steady.dataset
    assert window.statistics["n_reference"] == board.steady.dataset.sample_count


def test_traffic_thresholds_replace_the_defaults_of_their_metric_and_never_gate_candidates(board):
    record = ThresholdFactory(
        family=board.family, scope=Threshold.Scope.TRAFFIC, metric="new_categories", rule="absolute",
        limit=0.5, severity="block", rationale="Support adds product lines often; only a takeover matters.",
    )  # fmt: skip
    specs = traffic_specs(board.family)
    assert [s.limit for s in specs if s.metric == "new_categories"] == [0.5]
    assert thresholds_in_force(family=board.family, metric="new_categories", dataset_name="support-golden") == []
    window = window_compared(run=board.moved.run)
    assert not any("New categories" in reason for reason in window.reasons)
    assert record.pk in [s.id for s in specs]


def test_a_traffic_threshold_must_be_an_absolute_effect_on_a_traffic_statistic(db):
    threshold = Threshold(
        scope=Threshold.Scope.TRAFFIC, metric="bits_per_byte", rule="absolute", limit=0.1, rationale="x"
    )
    with pytest.raises(Exception, match="traffic threshold"):
        threshold.clean()
    threshold.metric, threshold.rule = "psi", "relative"
    with pytest.raises(Exception, match="absolute"):
        threshold.clean()


def test_the_next_candidates_pr_comment_says_the_traffic_moved(board):
    candidate = ArtifactFactory(family=board.family, drift_flag="green", status=Artifact.Status.PROMOTED)
    VerdictFactory(artifact=candidate, baseline=board.production, dataset=board.golden, outcome="green")
    body = comment_render(artifact=candidate, marker="<!-- m -->", page_url="https://driftboard.example/a/1")
    assert "**The traffic moved**: on window 2" in body
    assert f"v{board.production.version} is red" in body


def test_promoting_a_window_adds_its_most_surprising_samples_to_a_new_golden_version(board):
    dataset = traffic_window_promote(window=board.moved, outliers="5%")
    assert (dataset.name, dataset.version) == ("support-golden", 2)
    added = dataset.recipe["added_ids"]
    assert len(added) == 15 and "traffic-2-m299" in added
    assert dataset.sample_count == board.golden.sample_count + 15
    assert dataset_latest("support-golden") == dataset
    board.moved.refresh_from_db()
    assert board.moved.promoted_to == dataset


def test_the_traffic_tab_shows_windows_and_escapes_sample_text(board, client):
    client.force_login(UserFactory(username="reviewer", is_staff=True))
    page = client.get(reverse("family-traffic", args=["support"]) + "?window=2")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Window #2" in html and "Promote to golden" in html
    assert HOSTILE not in html and "&lt;img src=x" in html
    assert 'id="traffic-chart-data"' in html

    response = client.post(reverse("traffic-promote", args=["support", 2]))
    assert response.status_code == 302
    assert dataset_latest("support-golden").version == 2


def test_only_reviewers_promote_a_window(board, client):
    client.force_login(UserFactory(username="reader"))
    assert "Promote to golden" not in client.get(reverse("family-traffic", args=["support"])).content.decode()
    assert client.post(reverse("traffic-promote", args=["support", 2])).status_code == 403
    assert dataset_latest("support-golden").version == 1


def test_the_api_lists_windows_and_details_one(board, api_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        listed = api_client.get("/api/v1/families/support/traffic/").json()
    assert [(w["window"], w["outcome"]) for w in listed["windows"]] == [(1, "green"), (2, "red")]
    assert listed["windows"][1]["statistics"]["psi"] > 0.15
    detail = api_client.get("/api/v1/families/support/traffic/2/").json()
    assert detail["most_surprising"][0]["sample_id"] == "m299"
    assert detail["most_surprising"][0]["text"] == HOSTILE  # JSON carries it as data
    shares = {c["category"]: c for c in detail["category_shares"]}
    assert shares["code"]["new"] and shares["code"]["window_share"] == pytest.approx(0.2)
    assert detail["category_shares"][0]["category"] == "faq"  # grew most: 50 % → 80 %
    assert api_client.get("/api/v1/families/support/traffic/9/").status_code == 404
    assert api_client.get("/api/v1/families/nobody/traffic/").status_code == 404


def test_an_empty_family_has_an_empty_traffic_tab(db, client):
    family = DatasetFactory().name and ArtifactFactory().family
    client.force_login(UserFactory(username="reader"))
    html = client.get(reverse("family-traffic", args=[family.slug])).content.decode()
    assert "No traffic windows yet" in html


def test_a_reviewer_builds_a_golden_subset_from_the_family_page(board, client):
    log = "\n".join(f'{{"prompt": "ticket {i}", "category": "{["faq", "rare"][i % 25 == 0]}"}}' for i in range(500))
    url = reverse("traffic-build-golden", args=["support"])
    form = {"size": 50, "min_per_category": 10, "outliers": "0", "seed": 5}
    client.force_login(UserFactory(username="reader"))
    assert client.post(url, {**form, "file": SimpleUploadedFile("log.jsonl", log.encode())}).status_code == 403

    client.force_login(UserFactory(username="reviewer", is_staff=True))
    response = client.post(url, {**form, "file": SimpleUploadedFile("log.jsonl", log.encode())}, follow=True)
    dataset = dataset_latest("support-golden")
    assert (dataset.version, dataset.sample_count) == (2, 50)
    assert dataset.categories["rare"] >= 10  # its minimum, though 4 % of the log
    assert dataset.recipe["seed"] == 5 and dataset.recipe["family"] == "support"
    assert "seed 5" in response.content.decode()

    bad = client.post(url, {**form, "file": SimpleUploadedFile("log.jsonl", b'{"query": 1}')}, follow=True)
    assert "no &#x27;text&#x27; or &#x27;prompt&#x27; column" in bad.content.decode()
    assert dataset_latest("support-golden").version == 2


def test_the_family_series_leave_the_traffic_windows_to_the_traffic_tab(board):
    series = family_series(board.family)
    assert [(s.metric, s.dataset_id) for s in series] == [("bits_per_byte", board.golden.pk)]


def test_an_admin_sees_windows_and_traffic_thresholds(board, client):
    ThresholdFactory(scope=Threshold.Scope.TRAFFIC, metric="psi", rule="absolute", limit=0.2)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    assert client.get(reverse("admin:evals_trafficwindow_changelist")).status_code == 200
    assert client.get(reverse("admin:evals_trafficwindow_change", args=[board.moved.pk])).status_code == 200
    assert "traffic" in client.get(reverse("threshold-list")).content.decode()


def test_an_embedding_family_is_watched_on_similarity_where_lower_is_worse(db, tmp_path):
    rng = np.random.default_rng(4)
    family = FamilyFactory(slug="retriever", kind="embedding", datasets=["pairs"])
    rows = [{"id": f"q{i}", "text": f"query {i}", "reference": f"doc {i}", "timestamp": T0 + i} for i in range(300)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    golden = dataset_import(name="pairs", filename=path.name, source=path)
    production = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    similarity_snapshot(production, golden, rng.normal(0.8, 0.05, 300))
    (window,) = traffic_import(family=family, filename=path.name, source=path.read_bytes())
    similarity_snapshot(production, window.dataset, rng.normal(0.7, 0.05, 300))

    window = window_compared(run=window.run)

    assert (window.metric, window.outcome) == ("similarity", "red")
    assert window.statistics["worse_sigma"] > 1 and any("worse" in r for r in window.reasons)


def similarity_snapshot(artifact, dataset, values):
    return SnapshotFactory(
        artifact=artifact,
        dataset=dataset,
        metric="similarity",
        n=len(values),
        numerators=float_bytes(values),
        denominators=float_bytes(np.ones(len(values))),
        positions=np.arange(len(values), dtype=np.int32).tobytes(),
    )


def test_for_similarity_the_worst_samples_are_the_least_similar(db, tmp_path):
    family = FamilyFactory(slug="retriever", kind="embedding", datasets=["pairs"])
    rows = [{"id": f"q{i}", "text": f"query {i}", "reference": f"doc {i}"} for i in range(40)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    golden = dataset_import(name="pairs", filename=path.name, source=path)
    production = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    similarity_snapshot(production, golden, np.linspace(0.5, 0.9, 40))
    log = "\n".join(json.dumps({**r, "text": f"live {r['text']}"}) for r in rows).encode()
    (window,) = traffic_import(family=family, filename="log.jsonl", source=log)
    values = np.full(40, 0.8)
    values[7] = 0.1
    similarity_snapshot(production, window.dataset, values)
    window = window_compared(run=window.run)

    assert traffic_surprising(window)[0].sample_id == "q7"
    assert traffic_window_promote(window=window, outliers="1").recipe["added_ids"] == ["traffic-1-q7"]
