"""In Chromium: the review page's first screen says why in one line, its tables stay inside their cards at
1280 and 1920 px, and every sample is one click away as a CSV download."""

import pytest

pytestmark = pytest.mark.browser

# Elements wider than the card that holds them, outside the scrolling table wrappers.
OVERFLOWING = """() => [...document.querySelectorAll('.card')].filter((card) => card.scrollWidth > card.clientWidth + 1)
  .map((card) => card.id || card.querySelector('h2')?.textContent)"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_it_opens_on_the_red_metrics_with_nothing_overflowing(open_page, reader, live_board, width):
    artifact = live_board.candidate("red")
    page, errors = open_page(reader)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(artifact.get_absolute_url())

    line = page.locator("#decision .decision-line")
    assert line.text_content().startswith("Red — halted: ")
    assert line.bounding_box()["y"] + line.bounding_box()["height"] < 900  # on the first screen
    assert page.locator("#verdicts tbody tr").first.locator(".flag-red").count() == 1
    assert page.locator("#verdicts td.reasons-cell").first.bounding_box()["width"] >= 200
    assert page.evaluate(OVERFLOWING) == []
    assert errors == []


def test_it_downloads_every_sample_as_csv_in_one_click(open_page, reader, live_board, tmp_path):
    artifact = live_board.candidate("red")
    page, errors = open_page(reader)
    page.goto(artifact.get_absolute_url())

    with page.expect_download() as download:
        page.locator("#sample-export a", has_text="CSV").click()
    path = tmp_path / "samples.csv"
    download.value.save_as(path)

    rows = path.read_text().splitlines()
    assert rows[0].startswith("dataset,dataset_version,position,sample_id")
    assert len(rows) == 1 + live_board.dataset.sample_count
    assert errors == []
