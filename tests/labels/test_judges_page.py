"""A family's Judges page: each judge configuration's κ with its interval, the confusion matrix, the
disagreements, calibrated or not, reviewers among themselves; an admin trusts a configuration with a
written reason (an event), which others may not."""

import re

from django.test import Client

from evals.models import JudgeTrust
from evals.selectors import evaluation_profile
from tests.labels.conftest import client_of, reviewer_named
from tests.labels.test_judge_calibration import agreeing, label_all
from tests.labels.test_review_queue import browser_of


def judges_page(family, user) -> str:
    response = browser_of(user).get(f"/families/{family.slug}/judges/")
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_kappa_its_interval_the_confusion_and_the_disagreements(judged_candidate, django_user_model):
    family, *_, artifact = judged_candidate
    profile = evaluation_profile(family)
    profile.judge = {**profile.judge, "min_labels": 5}
    profile.save()
    ada = reviewer_named("ada")
    label_all(client_of(ada), artifact, agreeing(flip=3))
    api = client_of(ada).get(f"/api/v1/families/{family.slug}/judges/").json()["judges"][0]

    page = judges_page(family, django_user_model.objects.create_user("reader"))

    assert f"κ <strong>{api['kappa']:.2f}</strong> [{api['ci_low']:.2f}, {api['ci_high']:.2f}]" in page
    assert 'data-state="calibrated"' in page
    assert "Disagreements (3)" in page and page.count("<td>candidate</td><td>baseline</td>") == 3
    rows = re.findall(r"<tr><th>(\w+)</th>((?:<td>\d+</td>)+)</tr>", page)
    assert [[int(n) for n in re.findall(r"\d+", cells)] for _, cells in rows] == api["confusion"]
    assert "Trust this judge" not in page


def test_it_compares_reviewers_who_labelled_the_same_items(judged_candidate):
    family, *_, artifact = judged_candidate
    ada, grace = reviewer_named("ada"), reviewer_named("grace")
    label_all(client_of(ada), artifact, agreeing())
    label_all(client_of(grace), artifact, agreeing(flip=4))

    page = judges_page(family, ada)

    assert re.search(r"<td>pairwise</td><td>2</td><td>30</td><td>Cohen&#x27;s κ <strong>0\.\d\d</strong> \[", page)


def test_an_admin_trusts_an_uncalibrated_judge_with_a_reason(judged_candidate, django_user_model):
    family, *_ = judged_candidate
    admin = django_user_model.objects.create_user("root", is_staff=True)
    page = judges_page(family, admin)
    assert 'data-state="uncalibrated"' in page and "judge uncalibrated: no labels yet" in page
    key = re.search(r'name="configuration" value="(\w+)"', page).group(1)

    browser = browser_of(admin)
    refused = browser.post(f"/families/{family.slug}/judges/trust/", {"configuration": key, "reason": ""}, follow=True)
    assert "Say why" in refused.content.decode() and not JudgeTrust.objects.exists()
    browser.post(f"/families/{family.slug}/judges/trust/", {"configuration": key, "reason": "Checked by hand."})

    trust = JudgeTrust.objects.get()
    assert (trust.configuration, trust.actor, trust.reason) == (key, admin, "Checked by hand.")
    after = judges_page(family, admin)
    assert 'data-state="trusted"' in after and "Checked by hand." in after
    api = client_of(admin).get(f"/api/v1/families/{family.slug}/judges/").json()["judges"][0]
    assert api["trusted"] and api["calibrated"]


def test_it_lets_no_reviewer_or_reader_trust_a_judge(judged_candidate, django_user_model):
    family, *_ = judged_candidate
    for user in (reviewer_named("ada"), django_user_model.objects.create_user("reader")):
        body = {"configuration": "0" * 64, "reason": "Because."}
        assert browser_of(user).post(f"/families/{family.slug}/judges/trust/", body).status_code == 403
    assert Client().get(f"/families/{family.slug}/judges/").status_code == 302
    assert not JudgeTrust.objects.exists()
