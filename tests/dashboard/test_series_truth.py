"""The family time series tells the truth: each threshold step sits on its own point, markers are coloured by
their verdict as the caption says, 0…1 metrics are drawn on 0…1, and the first chart is a gated metric."""

import datetime

from driftboard.dashboard.charts import COLOURS, series_figure
from driftboard.dashboard.selectors import Series, SeriesArtifact, SeriesPoint, ThresholdStep, family_series
from evals.services import threshold_save

LIMITS = [0.03, 0.03, 0.03, 0.05, 0.05]
OUTCOMES = ["", "green", "red", "green", "amber"]
MARKERS = ["promoted", "promoted", "halted", "promoted", "held"]


def series(metric: str = "bits_per_byte", values=(2.0, 1.98, 2.2, 1.97, 2.03)) -> Series:
    points = [
        SeriesPoint(
            artifact=SeriesArtifact(n, n, f"{n:07x}" + "0" * 33, "main", "", datetime.datetime(2026, 1, n), {}),
            value=value,
            ci_low=value - 0.01,
            ci_high=value + 0.01,
            baseline_value=2.0,
            outcome=outcome,
            marker=marker,
            band_low=None,
            band_high=None,
            tokenizer_changed=False,
        )
        for n, (value, outcome, marker) in enumerate(zip(values, OUTCOMES, MARKERS, strict=True), start=1)
    ]
    step = ThresholdStep(threshold_id=7, rule="relative", severities=["block"] * len(LIMITS), limits=LIMITS)
    return Series(metric, 1, "golden v1", "lower", 2.0, points, [step])


def test_it_centres_each_threshold_step_on_its_own_point():
    figure = series_figure(series())
    line = next(t for t in figure["data"] if t["name"].startswith("block limit"))
    labels = figure["layout"]["xaxis"]["categoryarray"]

    assert line["line"]["shape"] == "hvh"  # the step half-way between points, not at the next point
    # The limit changes at the 4th point: the 3rd keeps its own 3 %, so the step is drawn between them.
    assert line["x"] == [labels[0], labels[2], labels[3], labels[4]]
    assert line["customdata"] == ["3 %", "3 %", "5 %", "5 %"]


def test_it_colours_every_marker_by_its_verdict():
    figure = series_figure(series())
    promoted = next(t for t in figure["data"] if t["name"] == "promoted")

    assert promoted["marker"]["color"] == [COLOURS[""], COLOURS["green"], COLOURS["green"]]


def test_it_draws_a_share_on_zero_to_one():
    assert series_figure(series("exact_match", (0.0,) * 5))["layout"]["yaxis"]["range"] == [-0.02, 1.02]
    assert "range" not in series_figure(series())["layout"]["yaxis"]


def test_it_opens_on_a_gated_metric(board, staff_user):
    assert [s.metric for s in family_series(board.family)] == ["bits_per_byte", "perplexity"]
    board.threshold.metric = "perplexity"
    threshold_save(threshold=board.threshold, user=staff_user, reason="Gate on perplexity for this test")

    assert [s.metric for s in family_series(board.family)] == ["perplexity", "bits_per_byte"]
