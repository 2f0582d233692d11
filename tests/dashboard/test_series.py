import numpy as np
from django.conf import settings
from django.urls import reverse

from driftboard.charts import series_figure
from driftboard.dashboard_selectors import family_series
from tests.dashboard.board import PRODUCTION_LEVELS


def bpb_series(board):
    return next(s for s in family_series(board.family) if s.metric == "bits_per_byte")


def traces_by_name(figure: dict) -> dict[str, dict]:
    return {trace["name"]: trace for trace in figure["data"]}


def test_it_puts_one_point_per_artifact_in_creation_order(board):
    series = bpb_series(board)
    artifacts = [*board.history, *board.candidates]
    assert [p.artifact for p in series.points] == artifacts
    figure = traces_by_name(series_figure(series))
    plotted = {url for name in ("scored", "promoted", "halted") for url, *_ in figure[name]["customdata"]}
    assert plotted == {a.get_absolute_url() for a in artifacts}


def test_it_marks_promoted_and_halted_artifacts_with_their_own_symbols(board):
    figure = traces_by_name(series_figure(bpb_series(board)))
    promoted = {row[0] for row in figure["promoted"]["customdata"]}
    halted = {row[0] for row in figure["halted"]["customdata"]}
    assert promoted == {a.get_absolute_url() for a in board.history}
    assert halted == {board.candidate("red").get_absolute_url()}
    assert figure["promoted"]["marker"]["symbol"] != figure["halted"]["marker"]["symbol"]


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


def test_it_draws_the_relative_threshold_against_each_verdicts_baseline(board):
    series = bpb_series(board)
    figure = series_figure(series)
    line = traces_by_name(figure)[f"block limit {100 * board.threshold.limit:g} %"]
    for point, y in zip(series.points, line["y"], strict=True):
        if point.baseline_value is None:
            assert y is None
        else:
            assert np.isclose(y, point.baseline_value * (1 + board.threshold.limit))


def test_it_shows_error_bars_from_the_confidence_interval(board):
    series = bpb_series(board)
    scored = traces_by_name(series_figure(series))["scored"]
    points = [p for p in series.points if not p.marker]
    assert np.allclose(scored["error_y"]["array"], [p.ci_high - p.value for p in points])
    assert np.allclose(scored["error_y"]["arrayminus"], [p.value - p.ci_low for p in points])


def test_it_renders_a_chart_per_metric_and_one_alone_on_request(board, reader_client):
    url = reverse("family-detail", args=[board.family.slug])
    assert len(reader_client.get(url).context["charts"]) == 2
    alone = reader_client.get(url, {"metric": "perplexity", "dataset": board.dataset.pk}).context["charts"]
    assert [chart["id"] for chart in alone] == [f"series-perplexity-{board.dataset.pk}"]
