"""In Chromium: the answers explorer filters by category and text, ranks and pages without a console error,
keeps hostile model output as text and nothing overflows its card at 1280 and 1920 px; the compare page's
CSV of every sample is one click away."""

import csv
import io

import pytest

from tests.e2e.conftest import open_page, reader, reviewer  # noqa: F401 (fixtures)
from tests.generation.answer_board import HOSTILE, build_answer_board

pytestmark = pytest.mark.browser

OVERFLOWING = """() => [...document.querySelectorAll('.card, .answer-pair')]
  .filter((box) => box.scrollWidth > box.clientWidth + 1).map((box) => box.id || box.dataset.sampleId || box.className)"""


@pytest.fixture
def live_answers(transactional_db):
    return build_answer_board()


@pytest.mark.parametrize("width", [1280, 1920])
def test_it_filters_ranks_and_pages_the_answers(open_page, reader, live_answers, width):  # noqa: F811
    page, errors = open_page(reader)
    dialogs = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message) or dialog.dismiss())
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(live_answers.candidate.get_absolute_url() + "answers/")

    assert page.locator("#answer-count").text_content() == "12 answers"
    assert page.locator("article.answer-pair").first.get_attribute("data-sample-id") == "q5"
    assert page.evaluate(OVERFLOWING) == []

    page.locator("#answer-filters select[name=category]").select_option("math")
    page.locator("#answer-filters input[name=text]").fill("<SCRIPT>")
    page.locator("#answer-filters button[type=submit]").click()
    page.wait_for_url("**text=*")

    assert page.locator("#answer-count").text_content() == "1 answer matches"
    hostile = page.locator('article[data-sample-id="q1"] [data-side="candidate"] .answer-text').first
    assert HOSTILE.split(" five")[0] in hostile.text_content()  # shown as text, never run
    assert page.evaluate("() => document.querySelector('#answers script') === null")
    assert dialogs == []  # the answer's alert(1) never ran

    page.locator("#answer-order a", has_text="position in the golden set").click()
    page.wait_for_url("**order=position*")
    assert page.locator("#answer-count").text_content() == "1 answer matches"  # the filters stay
    assert page.evaluate(OVERFLOWING) == []
    assert errors == []


def test_the_compare_page_downloads_every_sample_in_one_click(open_page, reader, live_answers, tmp_path):  # noqa: F811
    page, errors = open_page(reader)
    a, b = live_answers.baseline, live_answers.candidate
    page.goto(f"/families/{live_answers.family.slug}/compare/?a={a.pk}&b={b.pk}")

    with page.expect_download() as download:
        page.locator("#compare-export a", has_text="CSV").click()
    path = tmp_path / "samples.csv"
    download.value.save_as(path)

    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0][:4] == ["dataset", "dataset_version", "position", "sample_id"]
    assert len(rows) == 1 + len(live_answers.samples) + live_answers.text_dataset.sample_count
    assert "answer_similarity.baseline" in rows[0]
    assert errors == []
