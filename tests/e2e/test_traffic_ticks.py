"""In Chromium: the traffic charts draw every window's tick label whole, the last one included."""

import pytest
from django.urls import reverse

from tests.traffic.board import build_traffic_board

pytestmark = pytest.mark.browser

# Tick labels of the window axis that reach past the chart's right edge (drawn cut off).
CLIPPED_TICKS = """(id) => {
  const chart = document.getElementById(id).getBoundingClientRect();
  return [...document.querySelectorAll('#' + id + ' .xtick text')]
    .filter((tick) => tick.getBoundingClientRect().right > chart.right)
    .map((tick) => tick.textContent);
}"""


def test_it_draws_the_last_window_label_whole(open_page, reviewer, tmp_path):
    board = build_traffic_board(tmp_path)
    page, errors = open_page(reviewer)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(reverse("family-traffic", args=[board.family.slug]))

    chart = "traffic-mean-chart"
    page.locator(f"#{chart}[data-rendered=true] .main-svg").first.wait_for(state="attached", timeout=15_000)
    assert page.locator(f"#{chart} .xtick text").count() >= 2
    assert page.evaluate(CLIPPED_TICKS, chart) == []
    assert errors == []
