import os
import shutil

import pytest
from django.urls import reverse

from evals.models import EvalRun
from registry.models import PromotionEvent
from tests.dashboard.board import running_run
from tests.e2e.conftest import PASSWORD, ROOT

pytestmark = pytest.mark.browser

REVIEW_SCREENSHOT = ROOT / "docs" / "screenshots" / "artifact-review.png"


def pages(board) -> dict[str, tuple[str, int]]:
    """Screenshot name → (URL, number of plotly charts the page draws)."""
    backtest = "?rule=relative&limit=0.1&severity=block#backtest"
    return {
        "home": (reverse("home"), 0),
        "artifacts": (reverse("artifact-list"), 0),
        "artifact-review": (reverse("artifact-detail", args=[board.candidate("red").pk]), 3),
        "family-series": (reverse("family-detail", args=[board.family.slug]), 2),
        "thresholds": (reverse("threshold-list"), 0),
        "threshold-detail": (reverse("threshold-detail", args=[board.threshold.pk]) + backtest, 0),
        "queues": (reverse("queues"), 2),
        "experiments": (reverse("experiment-list"), 0),
        "family-compare": (
            reverse("family-compare", args=[board.family.slug])
            + f"?a={board.production.pk}&b={board.candidate('red').pk}",
            3,
        ),
        # Without a pick it opens on the newest judged candidate against its baseline.
        "family-compare-picker": (reverse("family-compare", args=[board.family.slug]), 3),
        "admin": (reverse("admin:index"), 0),
        "api-docs": (reverse("api-docs"), 0),
    }


def assert_charts_rendered(page, expected: int) -> None:
    charts = page.locator("[data-figure]")
    assert charts.count() == expected
    for index in range(expected):
        charts.nth(index).locator(".main-svg").first.wait_for(state="attached", timeout=10_000)


def test_it_logs_in_through_the_form(browser, live_server, reader, live_board):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.goto(reverse("artifact-list"))
    assert reverse("login") in page.url
    page.fill("input[name=username]", reader.username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{reverse('artifact-list')}")
    assert page.locator("table tbody tr").count() > 0
    context.close()


def test_it_renders_every_page_and_chart_without_console_errors(open_page, reviewer, live_board, screenshots):
    page, errors = open_page(reviewer)
    for name, (url, charts) in pages(live_board).items():
        page.goto(url)
        page.wait_for_load_state("networkidle")
        assert_charts_rendered(page, charts)
        page.screenshot(path=screenshots / f"{name}.png", full_page=True)
        assert errors == [], f"{name}: {errors}"
    if os.environ.get("DRIFTBOARD_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(screenshots / "artifact-review.png", REVIEW_SCREENSHOT)


def test_it_opens_the_artifact_of_a_clicked_time_series_point(open_page, reader, live_board):
    page, errors = open_page(reader)
    page.goto(reverse("family-detail", args=[live_board.family.slug]))
    chart = page.locator("[data-figure][data-point-url]").first
    chart.locator(".main-svg").first.wait_for(state="attached")
    halted_point = chart.locator(".scatterlayer .trace").last.locator("path.point").first
    box = halted_point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    target = live_board.candidate("red").get_absolute_url()
    page.wait_for_url(f"**{target}")
    assert errors == []


def test_it_lets_staff_halt_an_artifact_with_a_reason(open_page, reviewer, live_board):
    artifact = live_board.candidate("amber")
    page, errors = open_page(reviewer)
    page.goto(artifact.get_absolute_url())
    page.click("form[data-action=halt] button")  # the reason is required: nothing is sent
    assert page.url.endswith(artifact.get_absolute_url())
    page.fill("#halt-reason", "Legal corpus leaked into the fine-tune.")
    page.click("form[data-action=halt] button")
    page.locator(".message-success").wait_for()
    assert "Legal corpus leaked into the fine-tune." in page.locator("#promotion-history").inner_text()
    event = PromotionEvent.objects.filter(artifact=artifact).latest("id")
    assert (event.action, event.actor, event.reason) == (
        PromotionEvent.Action.HALT,
        reviewer,
        "Legal corpus leaked into the fine-tune.",
    )
    assert errors == []


def test_it_shows_no_decision_buttons_to_non_staff(open_page, reader, live_board):
    page, _ = open_page(reader)
    page.goto(live_board.candidate("amber").get_absolute_url())
    assert page.locator("form[data-action]").count() == 0
    assert page.get_by_text("Only reviewers and admins can promote or halt").is_visible()


def test_it_updates_run_progress_live(open_page, reader, live_board):
    artifact = live_board.candidate("green")
    run = running_run(live_board, artifact)
    page, errors = open_page(reader)
    page.goto(artifact.get_absolute_url())
    row = page.locator(f'tr[data-run-id="{run.pk}"]')
    assert f"{run.samples_done} / {run.samples_total}" in row.inner_text()
    EvalRun.objects.filter(pk=run.pk).update(status=EvalRun.Status.SUCCEEDED, samples_done=run.samples_total)
    page.locator("#runs-live-note a").wait_for(timeout=10_000)
    assert f"{run.samples_total} / {run.samples_total}" in row.inner_text()
    assert "Succeeded" in row.inner_text()
    assert errors == []
