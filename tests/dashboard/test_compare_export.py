"""The compare page's download: every sample of version b beside version a's values, streamed, the same rows
as GET /api/v1/artifacts/{b}/samples/?against={a}."""

import csv
import io
import json
import re
from html import unescape

import pytest
from django.urls import reverse

from evals.models import MetricSnapshot
from evals.selectors import _per_position
from tests.factories import ArtifactFactory, FamilyFactory


def lines(response) -> list[str]:
    assert response.status_code == 200 and response.streaming
    return b"".join(response.streaming_content).decode().splitlines()


def compare_page(board, reader_client, a, b) -> str:
    url = f"{reverse('family-compare', args=[board.family.slug])}?a={a.pk}&b={b.pk}"
    return reader_client.get(url).content.decode()


def export_link(content: str, kind: str) -> str:
    card = re.search(r'<p class="export-links small" id="compare-export">(.*?)</p>', content, re.S).group(1)
    return unescape(re.search(rf'<a href="([^"]+)" download>{kind}</a>', card).group(1))


def test_the_compare_pages_jsonl_is_the_apis_with_a_as_the_baseline(board, reader_client, api_client):
    a, b = board.candidate("green"), board.candidate("red")
    link = export_link(compare_page(board, reader_client, a, b), "JSONL")
    assert link == f"/artifacts/{b.pk}/samples.jsonl?against={a.pk}"

    page = reader_client.get(link)
    api = api_client.get(f"/api/v1/artifacts/{b.pk}/samples/", {"against": a.pk})

    assert page["Content-Disposition"] == (
        f'attachment; filename="{board.family.slug}-v{b.version}-against-v{a.version}-samples.jsonl"'
    )
    rows = [json.loads(line) for line in lines(page)]
    assert rows == [json.loads(line) for line in lines(api)]
    assert len(rows) == board.dataset.sample_count
    for metric in ("bits_per_byte", "perplexity"):
        theirs = _per_position(MetricSnapshot.objects.get(artifact=a, metric=metric))
        mine = _per_position(MetricSnapshot.objects.get(artifact=b, metric=metric))
        for row in rows:
            values = row["metrics"][metric]
            assert values["baseline"] == theirs[row["position"]] and values["candidate"] == mine[row["position"]]
    # By default the verdict's baseline (production) is used, not the version compared.
    production = _per_position(MetricSnapshot.objects.get(artifact=board.production, metric="bits_per_byte"))
    default = [json.loads(line) for line in lines(api_client.get(f"/api/v1/artifacts/{b.pk}/samples/"))]
    assert [r["metrics"]["bits_per_byte"]["baseline"] for r in default] == [production[r["position"]] for r in default]


def test_the_compare_pages_csv_is_the_apis(board, reader_client, api_client):
    a, b = board.history[0], board.candidate("amber")
    page = reader_client.get(export_link(compare_page(board, reader_client, a, b), "CSV"))
    api = api_client.get(f"/api/v1/artifacts/{b.pk}/samples/", {"as": "csv", "against": a.pk})

    text = lines(page)
    assert text == lines(api)
    rows = list(csv.DictReader(io.StringIO("\n".join(text))))
    theirs = _per_position(MetricSnapshot.objects.get(artifact=a, metric="perplexity"))
    assert [float(row["perplexity.baseline"]) for row in rows] == pytest.approx(
        [theirs[int(row["position"])] for row in rows]
    )


def test_a_version_of_another_family_is_refused(board, reader_client, api_client):
    b = board.candidate("red")
    stranger = ArtifactFactory(family=FamilyFactory(slug="other-gpt"))
    assert reader_client.get(f"/artifacts/{b.pk}/samples.csv?against={stranger.pk}").status_code == 404
    assert reader_client.get(f"/artifacts/{b.pk}/samples.csv?against=v1").status_code == 404
    refused = api_client.get(f"/api/v1/artifacts/{b.pk}/samples/", {"against": stranger.pk})
    assert refused.status_code == 400 and "against" in refused.json()
