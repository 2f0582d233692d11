import json

import numpy as np
from django.urls import reverse

from evals.models import MetricSnapshot
from evals.services.thresholds import threshold_save
from tests.dashboard.board import running_run


def per_sample(snapshot: MetricSnapshot) -> dict[int, float]:
    positions, numerators, denominators = snapshot.arrays()
    return dict(zip(positions.tolist(), (numerators / denominators).tolist(), strict=True))


def figure(response, chart_id: str) -> dict:
    content = response.content.decode()
    start = content.index(f'<script id="{chart_id}" type="application/json">') + len(
        f'<script id="{chart_id}" type="application/json">'
    )
    return json.loads(content[start : content.index("</script>", start)])


def test_it_shows_the_artifact_facts_and_lineage(board, reader_client):
    artifact = board.candidate("red")
    content = reader_client.get(artifact.get_absolute_url()).content.decode()
    for fact in (artifact.sha256, artifact.commit_sha, artifact.short_sha, artifact.branch, "Halted", "Red"):
        assert fact in content
    assert f'href="{board.production.get_absolute_url()}">v{board.production.version}</a>' in content
    parent_page = reader_client.get(board.production.get_absolute_url()).content.decode()
    assert all(f'href="{child.get_absolute_url()}">v{child.version}</a>' in parent_page for child in board.candidates)


def test_it_shows_each_metric_with_its_threshold_version_and_reasons(board, reader_client):
    artifact = board.candidate("red")
    response = reader_client.get(artifact.get_absolute_url())
    content = response.content.decode()
    verdict = artifact.verdicts.get(metric="bits_per_byte")
    assert f"{100 * verdict.delta:+.2f} %" in content
    assert f"{100 * verdict.ci_low:+.2f} % to {100 * verdict.ci_high:+.2f} %" in content
    assert f'{board.threshold.get_absolute_url()}#v{verdict.threshold_history_id}"' in content
    versions = list(board.threshold.history.order_by("history_id").values_list("history_id", flat=True))
    assert f"version {versions.index(verdict.threshold_history_id) + 1}</span>" in content
    assert f"z = {verdict.band_position:+.2f}" in content
    assert verdict.reasons[0] in content


def test_threshold_versions_are_numbered_within_each_threshold(board, reader_client):
    artifact = board.candidate("red")
    judged_with = artifact.verdicts.get(metric="bits_per_byte").threshold_history_id
    before = board.threshold.history.count()
    for limit in (0.03, 0.04):
        board.threshold.limit = limit
        threshold_save(threshold=board.threshold, user=None, reason=f"Try {limit}")

    page = reader_client.get(board.threshold.get_absolute_url()).content.decode()
    review = reader_client.get(artifact.get_absolute_url()).content.decode()

    assert all(f"<strong>Version {n}</strong>" in page for n in range(1, before + 3))
    assert f"<strong>Version {before + 3}</strong>" not in page
    versions = list(board.threshold.history.order_by("history_id").values_list("history_id", flat=True))
    assert f"version {versions.index(judged_with) + 1}</span>" in review


def test_it_says_on_what_share_of_the_golden_set_a_sampled_verdict_was_decided(board, reader_client):
    verdict = board.candidate("amber").verdicts.get(metric="bits_per_byte")
    share = round(100 * verdict.samples_used / verdict.samples_total)
    content = reader_client.get(board.candidate("amber").get_absolute_url()).content.decode()
    assert f"decided on {share} % of the golden set (n = {verdict.samples_used} of {verdict.samples_total})" in content


def test_it_lists_the_samples_that_regressed_most(board, reader_client):
    artifact = board.candidate("red")
    candidate = per_sample(artifact.snapshots.get(metric="bits_per_byte"))
    baseline = per_sample(board.production.snapshots.get(metric="bits_per_byte"))
    # Bits per byte: lower is better, so a relative rise is a regression; ranked by relative change.
    worse_by = {position: (candidate[position] - baseline[position]) / baseline[position] for position in candidate}
    expected = sorted((p for p in worse_by if worse_by[p] > 0), key=lambda p: -worse_by[p])[:20]
    rows = reader_client.get(artifact.get_absolute_url(), {"metric": "bits_per_byte"}).context["regressions"]
    assert [row.position for row in rows] == expected
    assert all(np.isclose(row.change, -worse_by[row.position]) for row in rows)
    assert rows[0].excerpt == f"Sample text number {expected[0]}."


def test_it_charts_binned_distributions_not_raw_samples(board, reader_client):
    artifact = board.candidate("red")
    response = reader_client.get(artifact.get_absolute_url())
    n = board.dataset.sample_count
    distribution = figure(response, "chart-distribution")
    assert [trace["name"] for trace in distribution["data"]] == ["baseline", "candidate"]
    assert all(sum(trace["y"]) == n and len(trace["y"]) == 40 for trace in distribution["data"])
    deltas = figure(response, "chart-paired-deltas")
    assert sum(deltas["data"][0]["y"]) == n
    categories = figure(response, "chart-categories")
    assert categories["data"][0]["y"] == ["code", "prose"]


def test_it_switches_the_charted_metric(board, reader_client):
    artifact = board.candidate("red")
    response = reader_client.get(artifact.get_absolute_url(), {"metric": "perplexity"})
    assert response.context["focus"].verdict.metric == "perplexity"
    edges_top = figure(response, "chart-distribution")["data"][0]["x"][-1]
    assert edges_top > 5  # perplexity per sample (e^2.5 ≈ 12), not bits per byte (≈ 2)


def test_it_reports_run_progress_as_json(board, reader_client):
    artifact = board.candidate("green")
    run = running_run(board, artifact)
    page = reader_client.get(artifact.get_absolute_url())
    assert page.context["unfinished"] is True
    assert reverse("artifact-progress", args=[artifact.pk]).encode() in page.content
    payload = reader_client.get(reverse("artifact-progress", args=[artifact.pk])).json()
    assert payload["finished"] is False
    live = next(r for r in payload["runs"] if r["id"] == run.pk)
    assert (live["status"], live["samples_done"], live["samples_total"]) == (
        "running",
        run.samples_done,
        run.samples_total,
    )
    assert live["percent"] == round(100 * run.samples_done / run.samples_total, 1)


def test_it_shows_failed_runs_with_their_error_and_the_promotion_history(board, reader_client):
    content = reader_client.get(board.candidate("amber").get_absolute_url()).content.decode()
    assert "CUDA out of memory" in content
    red_page = reader_client.get(board.candidate("red").get_absolute_url()).content.decode()
    assert "bits per byte worse by 8.0 %" in red_page
