"""In Chromium: the time axis by commit and its hover, comparing two versions from the chart and from the
list, the not-gated badge, and chart text that stays text."""

import pytest
from django.urls import reverse

from evals.models import DriftVerdict
from registry.models import Artifact

pytestmark = pytest.mark.browser

HOSTILE_CATEGORIES = ("<a href=x>c</a>", "<b>bold</b>")

# Page coordinates of one point of a trace, from plotly's own axes (category x, linear y).
POINT_POSITION = """([name, index]) => {
  const chart = document.querySelector('[data-point-url]');
  const trace = chart._fullData.find((t) => t.name === name);
  const xa = chart._fullLayout.xaxis, ya = chart._fullLayout.yaxis, box = chart.getBoundingClientRect();
  return {x: box.left + xa._offset + xa.c2p(xa.d2c(trace.x[index])), y: box.top + ya._offset + ya.c2p(trace.y[index])};
}"""


def open_series(page, board):
    page.goto(reverse("family-detail", args=[board.family.slug]))
    page.locator("[data-point-url] .main-svg").first.wait_for(state="attached")


def hover(page, trace: str, index: int) -> str:
    position = page.evaluate(POINT_POSITION, [trace, index])
    page.mouse.move(position["x"], position["y"])
    label = page.locator(".hoverlayer .hovertext").first
    label.wait_for(state="attached", timeout=5_000)
    return label.text_content()


def shift_click(page, trace: str, index: int, label: str) -> None:
    """Shift-click a point once plotly's hover has reached it (a click takes the hovered point, and
    plotly defers a hover that follows another too closely)."""
    position = page.evaluate(POINT_POSITION, [trace, index])
    page.mouse.move(position["x"], position["y"])
    page.locator(".hoverlayer .hovertext", has_text=label).first.wait_for(state="attached", timeout=5_000)
    page.keyboard.down("Shift")
    page.mouse.click(position["x"], position["y"])
    page.keyboard.up("Shift")


def test_it_labels_the_time_axis_by_version_and_commit(open_page, reader, live_board):
    page, errors = open_page(reader)
    open_series(page, live_board)
    ticks = page.locator("[data-point-url]").first.locator(".xtick text").all_text_contents()
    artifacts = [*live_board.history, *live_board.candidates]
    assert ticks == [f"v{a.version} · {a.commit_sha[:7]}" for a in artifacts]
    assert errors == []


def test_it_hovers_a_point_with_commit_branch_pull_request_flag_and_interval(open_page, reader, live_board):
    halted = live_board.candidate("red")
    Artifact.objects.filter(pk=halted.pk).update(branch="<b>bold</b>")
    page, errors = open_page(reader)
    open_series(page, live_board)
    text = hover(page, "halted", 0)
    snapshot = halted.snapshots.get(metric="bits_per_byte")
    assert f"v{halted.version} · {halted.commit_sha[:7]}" in text
    assert f"commit {halted.commit_sha[:12]}" in text
    assert "branch <b>bold</b>" in text  # shown as typed, not as markup
    bold = page.locator(".hoverlayer .hovertext tspan[style*='bold']").all_text_contents()
    assert bold == [f"v{halted.version} · {halted.commit_sha[:7]}"]  # the template's own title only
    pull_request = f"{halted.pull_request.repository}#{halted.pull_request.number}" if halted.pull_request else "—"
    assert f"PR {pull_request}" in text or f"PR {halted.pr_url}" in text
    assert "flag red" in text
    assert f"{snapshot.ci_low:.4g}" in text and f"{snapshot.ci_high:.4g}" in text
    assert errors == []


def test_it_compares_two_shift_clicked_points(open_page, reader, live_board):
    page, errors = open_page(reader)
    open_series(page, live_board)
    first, red = live_board.history[0], live_board.candidate("red")
    shift_click(page, "promoted", 0, f"v{first.version} · {first.commit_sha[:7]}")
    page.get_by_text("picked: shift-click a second point to compare").wait_for()
    shift_click(page, "halted", 0, f"v{red.version} · {red.commit_sha[:7]}")
    page.wait_for_url("**/compare/**")
    assert f"a={first.pk}" in page.url and f"b={red.pk}" in page.url
    assert page.locator("h1").inner_text() == f"{live_board.family.slug}: v{red.version} against v{first.version}"
    page.locator("#chart-distribution-plot .main-svg").first.wait_for(state="attached")
    assert page.locator("#comparison tbody tr").count() == 2
    assert page.locator("#regressions tbody tr").count() > 0
    assert errors == []


def test_it_compares_two_ticked_rows_of_the_artifact_list(open_page, reader, live_board):
    older, newer = live_board.candidates[0], live_board.candidates[3]
    page, errors = open_page(reader)
    page.goto(reverse("artifact-list"))
    page.get_by_label(f"Compare {live_board.family.slug} v{newer.version}").check()
    page.get_by_label(f"Compare {live_board.family.slug} v{older.version}").check()
    page.get_by_role("button", name="Compare the two ticked versions").click()
    page.wait_for_url("**/compare/**")
    assert f"a={older.pk}" in page.url and f"b={newer.pk}" in page.url
    page.locator("#chart-paired-deltas-plot .main-svg").first.wait_for(state="attached")
    assert errors == []


def test_it_shows_not_gated_for_a_metric_without_a_threshold(open_page, reader, live_board):
    artifact = live_board.candidate("green")
    DriftVerdict.objects.filter(artifact=artifact, metric="perplexity").update(
        outcome="green", threshold=None, threshold_history_id=None, band_low=None, band_high=None
    )
    page, errors = open_page(reader)
    page.goto(artifact.get_absolute_url())
    row = page.locator("#verdicts tbody tr", has_text="perplexity")
    assert row.locator(".badge").inner_text().strip() == "not gated"
    link = row.get_by_role("link", name="add one")
    assert "no threshold in force" in row.inner_text()
    assert link.get_attribute("href").startswith(reverse("admin:evals_threshold_add") + "?")
    gated = page.locator("#verdicts tbody tr", has_text="bits per byte")
    assert gated.locator(".badge").inner_text().strip() == "Green"
    assert errors == []


def test_it_draws_hostile_category_names_as_text(open_page, reader, live_board):
    artifact = live_board.candidate("red")
    verdict = artifact.verdicts.get(metric="bits_per_byte")
    delta = {"candidate": 2.1, "baseline": 2.0, "delta": -0.05, "n": 10}
    DriftVerdict.objects.filter(pk=verdict.pk).update(per_category={name: delta for name in HOSTILE_CATEGORIES})
    page, errors = open_page(reader)
    page.goto(f"{artifact.get_absolute_url()}?metric=bits_per_byte")  # the page opens on the worst gated metric
    chart = page.locator("#chart-categories-plot")
    chart.locator(".main-svg").first.wait_for(state="attached")
    assert sorted(chart.locator(".ytick text").all_text_contents()) == sorted(HOSTILE_CATEGORIES)
    assert chart.locator("a").count() == 0
    assert chart.locator("tspan[style*='bold']").count() == 0
    assert errors == []
