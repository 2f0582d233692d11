"""A green verdict that no limit judged reads "not gated": on the review page, in the API, in the PR comment."""

from django.urls import reverse

from evals.comments import comment_render
from evals.models import DriftVerdict
from evals.selectors import UNGATED, verdict_gated, verdict_shown_outcome
from evals.services.verdicts import verdict_for
from registry.publishing import comment_marker
from tests.factories import ArtifactFactory, DatasetFactory, FamilyFactory, SnapshotFactory, ThresholdFactory


def ungate(verdict: DriftVerdict) -> DriftVerdict:
    """As the verdict service stores a metric without a threshold in force and no band yet."""
    DriftVerdict.objects.filter(pk=verdict.pk).update(
        outcome="green", threshold=None, threshold_history_id=None, band_low=None, band_high=None
    )
    verdict.refresh_from_db()
    return verdict


def test_it_derives_gated_from_the_verdict_the_service_computes(db):
    family = FamilyFactory()
    dataset = DatasetFactory(samples=20)
    baseline, candidate = ArtifactFactory(family=family), ArtifactFactory(family=family)
    ThresholdFactory(family=family, metric="bits_per_byte")
    for artifact, level in ((baseline, 2.0), (candidate, 2.5)):
        for metric in ("bits_per_byte", "perplexity"):
            SnapshotFactory(artifact=artifact, dataset=dataset, metric=metric, level=level)
    verdicts = {
        snapshot.metric: DriftVerdict(artifact=candidate, dataset=dataset, **verdict_for(snapshot, baseline))
        for snapshot in candidate.snapshots.select_related("dataset", "artifact__family")
    }
    gated, ungated = verdicts["bits_per_byte"], verdicts["perplexity"]
    assert (gated.outcome, verdict_gated(gated), verdict_shown_outcome(gated)) == ("red", True, "red")
    assert ungated.delta < -0.2  # far worse, and still nothing judged it
    assert (ungated.outcome, verdict_gated(ungated), verdict_shown_outcome(ungated)) == ("green", False, UNGATED)


def test_it_shows_a_neutral_not_gated_badge_linking_to_the_threshold_form(board, reader_client):
    artifact = board.candidate("green")
    ungate(artifact.verdicts.get(metric="perplexity"))
    content = reader_client.get(artifact.get_absolute_url()).content.decode()
    assert content.count('class="badge flag-ungated">not gated</span>') == 1
    form = reverse("admin:evals_threshold_add")
    query = f"family={board.family.pk}&amp;metric=perplexity&amp;dataset_name={board.dataset.name}"
    assert f'no threshold in force — <a href="{form}?{query}">add one</a>' in content
    assert content.count('class="badge flag-green">Green</span>') >= 1  # bits per byte, gated, stays green


def test_it_flags_ungated_verdicts_in_the_api(board, api_client):
    artifact = board.candidate("green")
    ungate(artifact.verdicts.get(metric="perplexity"))
    body = api_client.get(reverse("api-artifact-detail", args=[artifact.pk])).json()
    by_metric = {v["metric"]: v for v in body["verdicts"]}
    assert (by_metric["perplexity"]["outcome"], by_metric["perplexity"]["gated"]) == ("green", False)
    assert (by_metric["bits_per_byte"]["outcome"], by_metric["bits_per_byte"]["gated"]) == ("green", True)


def test_it_says_not_gated_in_the_pull_request_comment(board, settings):
    settings.DRIFTBOARD_PUBLIC_URL = "https://driftboard.acme.example"
    artifact = board.candidate("green")
    ungate(artifact.verdicts.get(metric="perplexity"))
    body = comment_render(artifact=artifact, marker=comment_marker(artifact.family), page_url="https://x.example/")
    rows = {
        line.split("|")[2].strip(): line for line in body.splitlines() if line.startswith(f"| {board.dataset.name}")
    }
    form = f"https://driftboard.acme.example{reverse('admin:evals_threshold_add')}?family={board.family.pk}"
    assert "not gated" in rows["perplexity"] and "green" not in rows["perplexity"]
    assert (
        f"none in force — [add one]({form}&metric=perplexity&dataset_name={board.dataset.name})" in rows["perplexity"]
    )
    assert "none → green" not in body
    assert rows["bits per byte"].rstrip().endswith("🟢 green |")
