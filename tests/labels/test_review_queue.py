"""The review queue in the browser, through the real client: one item at a time, the judge's most
regressed items first, pairwise answers in a drawn order that the label is turned back from into
candidate/baseline terms, a reserved item never shown to a second reviewer, `reviewers_per_item`,
readers refused, and model output and notes escaped."""

import re

from django.test import Client

from evals.models import Label, ReviewReservation
from evals.selectors import evaluation_profile
from tests.judges.test_judge_preference_verdicts import candidate, judged
from tests.labels.conftest import reviewer_named

HOSTILE = '<script>alert("answer")</script>'
HOSTILE_NOTE = "<img src=x onerror=alert(1)>"


def browser_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown_sample(response) -> str:
    assert response.status_code == 200
    return re.search(r'id="review-item" data-kind="\w+" data-sample="([^"]+)"', response.content.decode()).group(1)


def review_url(artifact, kind: str = "pairwise") -> str:
    return f"/artifacts/{artifact.pk}/review/?kind={kind}"


def test_it_offers_the_regressed_items_first_and_stores_the_choice_in_candidate_baseline_terms(judged_candidate):
    *_, artifact = judged_candidate
    reviewer = reviewer_named("ada")
    browser = browser_of(reviewer)

    sample = shown_sample(browser.get(review_url(artifact)))
    shown_first = ReviewReservation.objects.get(reviewer=reviewer, sample__sample_id=sample).shown_first
    response = browser.post(review_url(artifact), {"sample": sample, "kind": "pairwise", "choice": "1"})

    assert response.status_code == 302
    assert int(sample[1:]) >= 6  # the judge preferred the baseline on s6 … s29, a tie before
    label = Label.objects.get(reviewer=reviewer, sample__sample_id=sample)
    assert (label.kind, label.value, label.shown_first) == ("pairwise", shown_first, shown_first)
    assert not ReviewReservation.objects.filter(reviewer=reviewer).exists()
    following = browser.get(review_url(artifact))
    assert shown_sample(following) != sample and "29 items left of 30" in following.content.decode()


def test_it_stores_a_tie_and_the_second_answer_by_their_keys(judged_candidate):
    *_, artifact = judged_candidate
    reviewer = reviewer_named("ada")
    browser = browser_of(reviewer)

    for choice in ("2", "3"):
        sample = shown_sample(browser.get(review_url(artifact)))
        shown_first = ReviewReservation.objects.get(reviewer=reviewer).shown_first
        browser.post(review_url(artifact), {"sample": sample, "kind": "pairwise", "choice": choice})
        expected = {"candidate": "baseline", "baseline": "candidate"}[shown_first] if choice == "2" else "tie"
        assert Label.objects.get(reviewer=reviewer, sample__sample_id=sample).value == expected


def test_it_never_shows_a_reserved_item_to_a_second_reviewer(judged_candidate):
    *_, artifact = judged_candidate
    first, second = browser_of(reviewer_named("ada")), browser_of(reviewer_named("grace"))

    held = shown_sample(first.get(review_url(artifact)))
    for _ in range(5):
        seen = shown_sample(second.get(review_url(artifact)))
        assert seen != held
        second.post(review_url(artifact), {"sample": seen, "kind": "pairwise", "choice": "3"})

    assert "Nothing left" in second.get(review_url(artifact) + f"&at={held}").content.decode()


def test_it_shows_an_item_to_as_many_reviewers_as_the_family_asks(judged_candidate):
    family, *_, artifact = judged_candidate
    ada, grace = reviewer_named("ada"), reviewer_named("grace")
    sample = shown_sample(browser_of(ada).get(review_url(artifact)))
    browser_of(ada).post(review_url(artifact), {"sample": sample, "kind": "pairwise", "choice": "3"})

    assert "29 items left of 30" in browser_of(grace).get(review_url(artifact)).content.decode()
    profile = evaluation_profile(family)
    profile.judge = {**profile.judge, "reviewers_per_item": 2}
    profile.save()
    assert "30 items left of 30" in browser_of(grace).get(review_url(artifact)).content.decode()


def test_it_labels_pointwise_with_a_rating(judged_candidate):
    *_, artifact = judged_candidate
    reviewer = reviewer_named("ada")
    browser = browser_of(reviewer)

    sample = shown_sample(browser.get(review_url(artifact, "pointwise")))
    body = {"sample": sample, "kind": "pointwise", "choice": "bad", "rating": "3", "note": "wanders off"}
    browser.post(review_url(artifact, "pointwise"), body)

    label = Label.objects.get(reviewer=reviewer)
    assert (label.kind, label.value, label.rating, label.note, label.shown_first) == (
        "pointwise",
        "bad",
        3,
        "wanders off",
        "",
    )


def test_it_refuses_readers_and_a_choice_without_a_reservation(judged_candidate, django_user_model):
    *_, artifact = judged_candidate
    reader = browser_of(django_user_model.objects.create_user("reader"))
    assert reader.get(review_url(artifact)).status_code == 403
    body = {"sample": "s7", "kind": "pairwise", "choice": "1"}
    assert reader.post(review_url(artifact), body).status_code == 403

    response = browser_of(reviewer_named("ada")).post(review_url(artifact), body, follow=True)
    assert "no longer held for you" in response.content.decode()
    assert not Label.objects.exists()


def test_it_escapes_hostile_answers_and_notes(judged_candidate):
    family, dataset, *_ = judged_candidate
    hostile = candidate(family, dataset, dict.fromkeys(range(30), HOSTILE))
    judged(hostile, dataset)
    reviewer = reviewer_named("ada")
    browser = browser_of(reviewer)

    page = browser.get(review_url(hostile))
    sample = shown_sample(page)
    browser.post(review_url(hostile), {"sample": sample, "kind": "pairwise", "choice": "2", "note": HOSTILE_NOTE})
    again = browser.get(review_url(hostile) + f"&at={sample}").content.decode()

    assert HOSTILE not in page.content.decode() and "&lt;script&gt;alert(&quot;answer&quot;)" in page.content.decode()
    assert HOSTILE_NOTE not in again and "&lt;img src=x onerror=alert(1)&gt;" in again


def test_the_family_queue_opens_the_newest_version_with_answers_to_compare(judged_candidate):
    family, *_, artifact = judged_candidate
    browser = browser_of(reviewer_named("ada"))

    response = browser.get(f"/families/{family.slug}/review/")

    assert response.status_code == 302 and response.url == f"/artifacts/{artifact.pk}/review/"
    assert f'href="/families/{family.slug}/review/"' in browser.get(f"/families/{family.slug}/").content.decode()
