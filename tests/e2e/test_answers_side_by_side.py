"""In Chromium: the review page focused on answer similarity shows the answers that regressed most side by
side, the changed words marked, model output as text, and long answers folded until clicked open."""

import pytest

from tests.generation.answer_board import (
    FRANCE_BASELINE,
    FRANCE_CANDIDATE,
    HOSTILE,
    LONG_BASELINE,
    LONG_CANDIDATE,
    build_answer_board,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def answer_board(transactional_db):
    return build_answer_board()


def test_it_shows_the_regressed_answers_side_by_side_and_unfolds_a_long_one(open_page, reader, answer_board):
    page, errors = open_page(reader)
    page.goto(answer_board.review_url() + "#answers")
    answers = page.locator("#answers")
    answers.wait_for()

    worst = answers.locator('[data-sample-id="q5"]')
    assert worst.locator('[data-side="baseline"] .answer-text').inner_text() == FRANCE_BASELINE
    assert worst.locator('[data-side="candidate"] .answer-text').inner_text() == FRANCE_CANDIDATE
    assert worst.locator('[data-side="baseline"] del').all_inner_texts() == ["Paris."]
    assert worst.locator('[data-side="candidate"] ins').all_inner_texts() == ["Lyon."]

    hostile = answers.locator('[data-sample-id="q1"] [data-side="candidate"] .answer-text')
    assert hostile.inner_text() == HOSTILE
    assert answers.locator("script, b").count() == 0

    long = answers.locator('[data-sample-id="q3"] [data-side="candidate"]')
    full = long.locator("details > .answer-text")
    assert not full.is_visible()
    assert long.locator(".fold-preview").is_visible()
    long.locator("summary").click()
    full.wait_for(state="visible")
    assert full.inner_text() == LONG_CANDIDATE
    assert not long.locator(".fold-preview").is_visible()
    assert long.locator("ins").all_inner_texts() == ["six", "It adds a closing remark nobody asked for."]
    baseline_full = answers.locator('[data-sample-id="q3"] [data-side="baseline"] details > .answer-text')
    assert not baseline_full.is_visible()  # each answer folds on its own
    answers.locator('[data-sample-id="q3"] [data-side="baseline"] summary').click()
    baseline_full.wait_for(state="visible")
    assert baseline_full.inner_text() == LONG_BASELINE
    assert errors == []
