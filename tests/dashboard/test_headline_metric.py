"""The artifact list and Home show each artifact's headline metric: its worst gated verdict and the change."""

from django.urls import reverse

from tests.dashboard.test_review_first_screen import ungated_answer_length


def headline_cell(page: str, artifact) -> str:
    row = page[page.index(f'href="{artifact.get_absolute_url()}"') :]
    row = row[: row.index("</tr>")]
    return row[row.index('class="headline"') :]


def test_it_shows_the_worst_gated_metric_and_its_change_in_the_artifact_list(board, reader_client):
    red = board.candidate("red")
    ungated_answer_length(board, red)  # sorts first by name and is ungated: never the headline

    page = reader_client.get(reverse("artifact-list")).content.decode()

    cell = headline_cell(page, red)
    assert cell.startswith('class="headline">perplexity <strong class="outcome-red">-')  # the largest red drop
    assert "answer length" not in cell
    assert '<span class="muted">—</span>' in headline_cell(page, board.history[0])  # never compared


def test_it_shows_the_headline_metric_of_the_latest_candidates_on_home(board, reader_client):
    page = reader_client.get(reverse("home")).content.decode()

    latest = page[page.index("Latest candidates") :]
    assert headline_cell(latest, board.candidate("red")).startswith('class="headline">perplexity <strong')
