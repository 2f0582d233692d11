"""Compare any two versions: the page and GET /api/v1/compare/, on stored per-sample arrays."""

import pytest
from django.urls import reverse

from evals.models import DriftVerdict, MetricSnapshot
from evals.services.verdicts import verdict_for
from tests.factories import ArtifactFactory, FamilyFactory

STATISTICS = ("delta", "ci_low", "ci_high", "p_value", "ks", "wasserstein")


def compare_url(board, a, b, **extra) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"a": a.pk, "b": b.pk, **extra}.items())
    return f"{reverse('family-compare', args=[board.family.slug])}?{query}"


def test_it_gives_the_statistics_a_verdict_gives_on_the_same_arrays(board, api_client):
    a, b = board.candidate("green"), board.candidate("red")
    body = api_client.get(reverse("api-compare-list"), {"a": a.pk, "b": b.pk}).json()
    assert (body["a"]["id"], body["b"]["version"]) == (a.pk, b.version)
    by_metric = {row["metric"]: row for row in body["comparisons"]}
    assert set(by_metric) == {"bits_per_byte", "perplexity"}
    for metric, row in by_metric.items():
        snapshot = MetricSnapshot.objects.select_related("dataset", "artifact__family").get(artifact=b, metric=metric)
        verdict = verdict_for(snapshot, a)
        assert row["comparable"] is True
        assert row["n"] == verdict["samples_used"] == board.dataset.sample_count
        assert (row["b_value"], row["a_value"]) == (verdict["candidate_value"], verdict["baseline_value"])
        for name in STATISTICS:
            assert row[name] == verdict[name], (metric, name)
        assert row["per_category"] == verdict["per_category"]
    assert by_metric["bits_per_byte"]["delta"] < -0.05  # red is about 9 % worse than green


def test_it_narrows_to_one_dataset_and_rejects_bad_input_with_400_and_404(board, api_client):
    a, b = board.candidate("green"), board.candidate("red")
    url = reverse("api-compare-list")
    assert len(api_client.get(url, {"a": a.pk, "b": b.pk, "dataset": board.dataset.name}).json()["comparisons"]) == 2
    assert api_client.get(url, {"a": a.pk, "b": b.pk, "dataset": "elsewhere"}).json()["comparisons"] == []
    missing = api_client.get(url, {"a": a.pk})
    assert missing.status_code == 400 and "b" in missing.json()
    assert api_client.get(url, {"a": "v9", "b": b.pk}).status_code == 400
    assert api_client.get(url, {"a": a.pk, "b": 999_999}).status_code == 404
    assert DriftVerdict.objects.count() == 2 * len(board.candidates)  # reading never writes a verdict


def test_it_refuses_anonymous_readers(board, anonymous_client):
    response = anonymous_client.get(reverse("api-compare-list"), {"a": 1, "b": 2})
    assert response.status_code == 401


def test_it_says_when_two_versions_were_scored_differently(board, api_client):
    a, b = board.candidate("green"), board.candidate("red")
    MetricSnapshot.objects.filter(artifact=b, metric="perplexity").update(
        fingerprint={"dataset_sha256": "d", "tokenizer_hash": "other", "scorer_version": "causal-rolling/1"}
    )
    rows = {
        r["metric"]: r
        for r in api_client.get(reverse("api-compare-list"), {"a": a.pk, "b": b.pk}).json()["comparisons"]
    }
    assert rows["perplexity"]["comparable"] is False
    assert "tokenizer_hash" in rows["perplexity"]["reason"] and "delta" not in rows["perplexity"]


def test_it_shows_the_table_distributions_and_regressed_samples_of_the_page(board, reader_client):
    a, b = board.history[0], board.candidate("red")
    response = reader_client.get(compare_url(board, a, b))
    assert response.status_code == 200
    rows = {row.compared.metric: row for row in response.context["rows"]}
    verdict = verdict_for(
        MetricSnapshot.objects.select_related("dataset", "artifact__family").get(artifact=b, metric="bits_per_byte"), a
    )
    assert rows["bits_per_byte"].compared.comparison.delta == verdict["delta"]
    content = response.content.decode()
    assert f"{100 * verdict['delta']:+.2f} %" in content
    assert [c["id"] for c in response.context["distribution_charts"]] == [
        "chart-distribution",
        "chart-paired-deltas",
        "chart-categories",
    ]
    names = [t["name"] for t in response.context["distribution_charts"][0]["figure"]["data"]]
    assert names == [f"v{a.version}", f"v{b.version}"]
    regressions = response.context["regressions"]
    assert regressions and all(row.change < 0 for row, _ in regressions)
    assert 'id="regressions"' in content


def test_it_focuses_the_metric_asked_for(board, reader_client):
    a, b = board.candidate("green"), board.candidate("red")
    response = reader_client.get(compare_url(board, a, b, metric="perplexity", dataset=board.dataset.pk))
    assert response.context["focus"].metric == "perplexity"


def test_it_opens_on_the_newest_candidate_against_its_baseline_and_404s_for_another_familys_artifact(
    board, reader_client
):
    page = reader_client.get(reverse("family-compare", args=[board.family.slug]))
    newest = board.candidates[-1]
    assert page.status_code == 200
    assert (page.context["result"].a, page.context["result"].b) == (board.production, newest)
    assert page.context["a_id"] != page.context["b_id"]
    content = page.content.decode()
    assert 'id="compare-defaulted"' in content
    assert content.count("<option") == 2 * (len(board.history) + len(board.candidates))
    assert f'<option value="{newest.pk}" selected>' in content
    same = reader_client.get(compare_url(board, newest, newest))
    assert same.context["result"] is None and 'id="compare-same"' in same.content.decode()
    stranger = ArtifactFactory(family=FamilyFactory(slug="other-gpt"))
    assert reader_client.get(compare_url(board, board.production, stranger)).status_code == 404


@pytest.mark.parametrize("picked", [1, 3])
def test_it_asks_for_exactly_two_ticked_rows(board, reader_client, picked):
    ids = [a.pk for a in board.candidates[:picked]]
    response = reader_client.get(reverse("artifact-compare-picked"), {"pick": ids}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("artifact-list")
    assert "Tick exactly two versions of the same family" in response.content.decode()


def test_it_opens_two_ticked_rows_older_first(board, reader_client):
    older, newer = board.candidates[0], board.candidates[2]
    response = reader_client.get(reverse("artifact-compare-picked"), {"pick": [newer.pk, older.pk]})
    assert response.status_code == 302
    assert response.url == compare_url(board, older, newer)
    listing = reader_client.get(reverse("artifact-list")).content.decode()
    assert f'name="pick" value="{older.pk}" form="compare-picked"' in listing
