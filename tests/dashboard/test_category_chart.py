"""The change-by-category chart never clips a category's first letter and words each change as the verdict
table does: percent for a relative metric, the metric's units for an absolute one."""

from driftboard.dashboard.charts import category_delta_figure

PER_CATEGORY = {"python-code": {"delta": -0.25, "n": 40}, "prose": {"delta": 0.05, "n": 69}}


def test_it_grows_the_left_margin_to_the_longest_category():
    figure = category_delta_figure(PER_CATEGORY, "bits_per_byte")

    assert figure["layout"]["yaxis"]["automargin"] is True
    assert figure["data"][0]["y"] == ["prose", "python-code"]


def test_it_shows_relative_changes_in_percent():
    figure = category_delta_figure(PER_CATEGORY, "bits_per_byte")

    assert figure["data"][0]["x"] == [5.0, -25.0]
    assert figure["layout"]["xaxis"]["title"]["text"] == "relative change (%)"


def test_it_shows_absolute_changes_in_the_metrics_units():
    figure = category_delta_figure(PER_CATEGORY, "answer_similarity")

    assert figure["data"][0]["x"] == [0.05, -0.25]
    assert figure["layout"]["xaxis"]["title"]["text"] == "change (answer similarity)"
    assert "%" not in figure["data"][0]["hovertemplate"].replace("%{", "")
