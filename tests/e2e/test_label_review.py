"""Chromium labels a drifted model's answers from the keyboard alone: 20 pairwise items, each shown in
a drawn order, stored in candidate/baseline terms; a second reviewer is never shown the item the
first one holds."""

import pytest

from evals.models import Label
from tests.factories import UserFactory
from tests.judges.conftest import judge_server  # noqa: F401  (fixture)
from tests.judges.test_judge_preference_verdicts import pairwise  # noqa: F401  (fixture)
from tests.labels.conftest import judged_candidate  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


def key_for(page) -> str:
    """The key a careful reviewer presses: the answer that says what comes next, or a tie."""
    first, second = (page.locator(f'[data-answer="{n}"] pre').inner_text() for n in (1, 2))
    if first == second:
        return "3"
    return "1" if "comes next" in first else "2"


def test_it_labels_twenty_pairwise_items_by_keyboard(judged_candidate, open_page, transactional_db):  # noqa: F811
    *_, artifact = judged_candidate
    ada, grace = UserFactory(username="ada", is_staff=True), UserFactory(username="grace", is_staff=True)
    page, errors = open_as_reviewer(open_page, ada, artifact)
    other, _ = open_as_reviewer(open_page, grace, artifact)
    assert other.locator("#review-item").get_attribute("data-sample") != sample_of(page)

    page.keyboard.press("n")
    page.keyboard.type("the baseline names the number")
    page.keyboard.press("Escape")
    noted = sample_of(page)
    for _ in range(20):
        shown = sample_of(page)
        with page.expect_navigation():
            page.keyboard.press(key_for(page))
        assert sample_of(page) != shown

    labels = list(Label.objects.filter(reviewer=ada).select_related("sample"))
    assert len(labels) == 20 and page.locator("#review-left").inner_text() == "10 items left of 30"
    assert all(label.value == ("tie" if label.sample.position < 6 else "baseline") for label in labels)
    assert {label.shown_first for label in labels} == {"candidate", "baseline"}
    assert next(label.note for label in labels if label.sample.sample_id == noted) == "the baseline names the number"
    assert not errors


def open_as_reviewer(open_page, user, artifact):
    page, errors = open_page(user)
    page.goto(f"/artifacts/{artifact.pk}/review/")
    return page, errors


def sample_of(page) -> str:
    return page.locator("#review-item").get_attribute("data-sample")
