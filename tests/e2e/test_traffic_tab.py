"""The traffic tab in Chromium: its three charts draw, model output stays text, and a reviewer promotes a window."""

import pytest
from django.urls import reverse

from evals.selectors import dataset_latest
from tests.traffic.board import HOSTILE, build_traffic_board

pytestmark = pytest.mark.browser

CHARTS = ("traffic-mean-chart", "traffic-shift-chart", "traffic-mix-chart")


def test_it_draws_the_traffic_tab_and_promotes_a_window(open_page, reviewer, tmp_path, screenshots):
    board = build_traffic_board(tmp_path)
    page, errors = open_page(reviewer)

    page.goto(reverse("family-traffic", args=[board.family.slug]) + "?window=2")

    for chart in CHARTS:
        page.locator(f"#{chart}[data-rendered=true] .main-svg").first.wait_for(state="attached", timeout=15_000)
    assert page.locator("#traffic-mean-chart .point").count() >= 2
    assert page.locator("#traffic-mix-chart .legendtext", has_text="code").count() == 1
    assert page.locator("#window-detail .badge", has_text="Red").count() == 1
    assert page.get_by_text(HOSTILE, exact=False).count() >= 1
    assert page.evaluate("window.__xss") is None
    page.screenshot(path=str(screenshots / "family-traffic.png"), full_page=True)

    page.click("text=Promote to golden")
    page.wait_for_url("**?window=2")
    assert "promoted" in page.locator(".messages, [role=status], body").first.inner_text()
    assert dataset_latest("support-golden").version == 2
    assert errors == []
