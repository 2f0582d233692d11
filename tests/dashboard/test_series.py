"""The family time series: one category per artifact in commit order, hover facts, the threshold in force
as a step line, the k·σ band, decision and tokenizer markers, and text that plotly cannot read as markup."""

import numpy as np
from django.conf import settings
from django.urls import reverse

from driftboard.dashboard.charts import MAX_TICK_LABELS, series_figure
from driftboard.dashboard.selectors import family_series
from evals.models import DriftVerdict, MetricSnapshot
from evals.services import threshold_save
from registry.models import Artifact, PromotionEvent
from tests.dashboard.board import PRODUCTION_LEVELS, add_candidates


def bpb_series(board):
    return next(s for s in family_series(board.family) if s.metric == "bits_per_byte")


def traces_by_name(figure: dict) -> dict[str, dict]:
    return {trace["name"]: trace for trace in figure["data"]}


def hover_rows(figure: dict) -> dict[int, list]:
    """Artifact id → its hover customdata, over every marker trace."""
    names = ("scored", "held", "promoted", "halted")
    return {row[0]: row for trace in figure["data"] if trace["name"] in names for row in trace["customdata"]}


def test_it_puts_one_category_per_artifact_in_commit_order(board):
    series = bpb_series(board)
    artifacts = [*board.history, *board.candidates]
    assert [p.artifact.id for p in series.points] == [a.pk for a in artifacts]
    layout = series_figure(series)["layout"]
    assert layout["xaxis"]["type"] == "category"
    assert layout["xaxis"]["categoryarray"] == [f"v{a.version} · {a.commit_sha[:7]}" for a in artifacts]
    assert set(hover_rows(series_figure(series))) == {a.pk for a in artifacts}


def test_it_thins_the_tick_labels_of_a_crowded_axis_keeping_the_newest(board):
    add_candidates(board, 3 * MAX_TICK_LABELS)
    xaxis = series_figure(bpb_series(board))["layout"]["xaxis"]
    assert len(xaxis["categoryarray"]) == len(board.history) + len(board.candidates)
    assert len(xaxis["tickvals"]) <= MAX_TICK_LABELS
    assert xaxis["tickvals"][-1] == xaxis["categoryarray"][-1]
    assert set(xaxis["tickvals"]) <= set(xaxis["categoryarray"])


def test_it_hovers_with_commit_branch_pull_request_flag_and_interval(board):
    figure = series_figure(bpb_series(board))
    pr_artifact = next(a for a in board.candidates if a.pull_request_id)
    _, commit, branch, pull_request, flag, ci_low, ci_high = hover_rows(figure)[pr_artifact.pk]
    snapshot = pr_artifact.snapshots.get(metric="bits_per_byte")
    assert commit == pr_artifact.commit_sha[:12]
    assert branch == pr_artifact.branch
    assert pull_request == f"{pr_artifact.pull_request.repository}#{pr_artifact.pull_request.number}"
    assert flag == pr_artifact.drift_flag
    assert np.allclose([ci_low, ci_high], [snapshot.ci_low, snapshot.ci_high], rtol=1e-5)
    template = figure["data"][-1]["hovertemplate"]
    for field in ("commit", "branch", "PR", "flag", "95 % CI"):
        assert field in template


def test_it_says_not_gated_for_a_green_that_no_limit_judged(board):
    artifact = board.candidate("green")
    DriftVerdict.objects.filter(artifact=artifact, metric="bits_per_byte").update(
        threshold=None, threshold_history_id=None, band_low=None
    )
    assert hover_rows(series_figure(bpb_series(board)))[artifact.pk][4] == "not gated"


def test_it_marks_promoted_halted_and_held_artifacts_with_their_own_symbols(board):
    held = board.candidate("amber")
    PromotionEvent.objects.create(artifact=held, action=PromotionEvent.Action.HOLD, reason="amber: a reviewer decides")
    traces = traces_by_name(series_figure(bpb_series(board)))
    ids = {name: {row[0] for row in traces[name]["customdata"]} for name in ("promoted", "halted", "held")}
    assert ids == {
        "promoted": {a.pk for a in board.history},
        "halted": {board.candidate("red").pk},
        "held": {held.pk},
    }
    symbols = {traces[name]["marker"]["symbol"] for name in ("scored", "promoted", "halted", "held")}
    assert len(symbols) == 4


def test_it_marks_a_tokenizer_change_from_the_fingerprints(board):
    changed = board.candidates[1]
    for snapshot in MetricSnapshot.objects.filter(artifact__family=board.family):
        after = snapshot.artifact.created_at >= changed.created_at
        snapshot.fingerprint = {**snapshot.fingerprint, "tokenizer_hash": "new" if after else "old"}
        snapshot.save(update_fields=["fingerprint"])
    series = bpb_series(board)
    assert [p.artifact.id for p in series.points if p.tokenizer_changed] == [changed.pk]
    trace = traces_by_name(series_figure(series))["tokenizer changed"]
    assert trace["x"] == [f"v{changed.version} · {changed.commit_sha[:7]}"]


def test_it_shades_the_band_from_earlier_production_values(board):
    series = bpb_series(board)
    production_values = [a.snapshots.get(metric="bits_per_byte").value for a in board.history]
    assert np.allclose(production_values, PRODUCTION_LEVELS)
    first_candidate = series.points[len(board.history)]
    k = settings.DRIFTBOARD_BAND_K
    mean, sigma = np.mean(production_values), np.std(production_values, ddof=1)
    assert np.isclose(first_candidate.band_low, mean - k * sigma)
    assert np.isclose(first_candidate.band_high, mean + k * sigma)
    assert all(p.band_low is None for p in series.points[: len(board.history)])
    band = traces_by_name(series_figure(series))[f"{k:g}·σ band of production values"]
    assert band["fill"] == "tonexty"


def expanded(trace: dict, labels: list[str]) -> list[tuple]:
    """A step trace's (y, customdata) at every category: the value of the last step at or before it."""
    steps = dict(zip(trace["x"], zip(trace["y"], trace["customdata"], strict=True), strict=True))
    values, current = [], (None, None)
    for label in labels:
        current = steps.get(label, current)
        values.append(current)
    return values


def threshold_line(series) -> tuple[dict, list[tuple]]:
    figure = series_figure(series)
    line = next(t for t in figure["data"] if t["name"].startswith("block limit"))
    return line, expanded(line, figure["layout"]["xaxis"]["categoryarray"])


def test_it_steps_the_threshold_line_to_the_limit_in_force_when_each_point_was_judged(board, staff_user):
    before = len(board.history) + len(board.candidates)
    board.threshold.limit = 0.05
    threshold_save(threshold=board.threshold, user=staff_user, reason="Looser while the tokenizer changes")
    add_candidates(board, 2)
    series = bpb_series(board)
    line, values = threshold_line(series)
    assert line["line"]["shape"] == "hvh"
    assert len(line["x"]) < len(series.points)  # only the steps travel
    limits = [limit for _, limit in values]
    assert limits[len(board.history) : before] == ["3 %"] * (before - len(board.history))
    assert limits[before:] == ["5 %", "5 %"]
    for point, (y, limit) in zip(series.points, values, strict=True):
        if point.baseline_value is None:
            assert y is None
        else:
            assert np.isclose(y, point.baseline_value * (1 + float(limit.rstrip(" %")) / 100), rtol=1e-5)


def test_it_drops_the_line_where_the_threshold_was_disabled(board, staff_user):
    board.threshold.enabled = False
    threshold_save(threshold=board.threshold, user=staff_user, reason="Paused during the migration")
    add_candidates(board, 1)
    _, values = threshold_line(bpb_series(board))
    assert values[-1] == (None, "none")
    assert any(y is not None for y, _ in values[:-1])


def test_it_escapes_branch_names_and_labels_for_plotly(board):
    artifact = board.candidate("green")
    Artifact.objects.filter(pk=artifact.pk).update(branch="<b>bold</b>&<a href=x>c</a>")
    row = hover_rows(series_figure(bpb_series(board)))[artifact.pk]
    assert row[2] == "&lt;b&gt;bold&lt;/b&gt;&amp;&lt;a href=x&gt;c&lt;/a&gt;"


def test_it_shows_error_bars_from_the_confidence_interval(board):
    series = bpb_series(board)
    scored = traces_by_name(series_figure(series))["scored"]
    points = [p for p in series.points if not p.marker]
    assert np.allclose(scored["error_y"]["array"], [p.ci_high - p.value for p in points], rtol=1e-5)
    assert np.allclose(scored["error_y"]["arrayminus"], [p.value - p.ci_low for p in points], rtol=1e-5)


def test_it_renders_a_chart_per_metric_and_one_alone_on_request(board, reader_client):
    url = reverse("family-detail", args=[board.family.slug])
    charts = reader_client.get(url).context["charts"]
    assert len(charts) == 2
    assert charts[0]["point_url"] == "/artifacts/{id}/"
    assert charts[0]["compare_url"].startswith(reverse("family-compare", args=[board.family.slug]))
    alone = reader_client.get(url, {"metric": "perplexity", "dataset": board.dataset.pk}).context["charts"]
    assert [chart["id"] for chart in alone] == [f"series-perplexity-{board.dataset.pk}"]


def test_it_draws_the_newest_artifacts_with_the_band_and_tokenizer_of_the_whole_history(board):
    whole = bpb_series(board)
    changed = board.candidates[1]
    for snapshot in MetricSnapshot.objects.filter(artifact__family=board.family):
        after = snapshot.artifact.created_at >= changed.created_at
        snapshot.fingerprint = {**snapshot.fingerprint, "tokenizer_hash": "new" if after else "old"}
        snapshot.save(update_fields=["fingerprint"])
    window = next(s for s in family_series(board.family, last=2) if s.metric == "bits_per_byte")
    assert [p.artifact.id for p in window.points] == [p.artifact.id for p in whole.points[-2:]]
    for drawn, full in zip(window.points, whole.points[-2:], strict=True):
        assert (drawn.band_low, drawn.band_high) == (full.band_low, full.band_high)
    assert [p.tokenizer_changed for p in window.points] == [True, False]  # v(candidate 1) follows the anchor


def test_it_says_how_many_artifacts_the_window_leaves_out(board, reader_client, monkeypatch):
    monkeypatch.setattr("driftboard.dashboard.selectors.SERIES_WINDOW", 2)
    url = reverse("family-detail", args=[board.family.slug])
    total = len(board.history) + len(board.candidates)
    page = reader_client.get(url)
    assert f"Showing the newest 2 of {total} artifacts" in page.content.decode()
    assert len(page.context["charts"][0]["figure"]["layout"]["xaxis"]["categoryarray"]) == 2
    everything = reader_client.get(url, {"all": "1"})
    assert "Showing the newest" not in everything.content.decode()
    assert len(everything.context["charts"][0]["figure"]["layout"]["xaxis"]["categoryarray"]) == total
