from django.test import Client
from django.urls import reverse

from registry.models import Artifact, PromotionEvent


def test_it_lets_staff_halt_with_a_reason_and_records_the_event(board, staff_page_client, staff_user):
    artifact = board.candidate("amber")
    response = staff_page_client.post(
        reverse("artifact-halt", args=[artifact.pk]), {"reason": "Legal corpus leaked into the fine-tune."}, follow=True
    )
    assert response.redirect_chain[-1][0] == artifact.get_absolute_url()
    event = PromotionEvent.objects.filter(artifact=artifact).latest("id")
    assert (event.action, event.actor, event.reason, event.automatic) == (
        PromotionEvent.Action.HALT,
        staff_user,
        "Legal corpus leaked into the fine-tune.",
        False,
    )
    artifact.refresh_from_db()
    assert artifact.status == Artifact.Status.HALTED
    assert b"halted." in response.content
    assert b"Legal corpus leaked into the fine-tune." in response.content


def test_it_lets_staff_promote_and_archives_the_previous_production_artifact(board, staff_page_client, staff_user):
    artifact = board.candidate("green")
    staff_page_client.post(reverse("artifact-promote", args=[artifact.pk]), {"reason": "Reviewed the samples."})
    artifact.refresh_from_db()
    board.production.refresh_from_db()
    assert artifact.stage == Artifact.Stage.PRODUCTION
    assert board.production.stage == Artifact.Stage.ARCHIVED
    event = PromotionEvent.objects.filter(artifact=artifact).latest("id")
    assert (event.action, event.actor, event.reason) == (
        PromotionEvent.Action.PROMOTE,
        staff_user,
        "Reviewed the samples.",
    )


def test_it_refuses_an_action_without_a_reason(board, staff_page_client):
    artifact = board.candidate("amber")
    events_before = PromotionEvent.objects.count()
    response = staff_page_client.post(reverse("artifact-halt", args=[artifact.pk]), {"reason": "   "}, follow=True)
    assert PromotionEvent.objects.count() == events_before
    assert b"Give a reason" in response.content


def test_it_forbids_non_staff_and_shows_them_no_buttons(board, reader_client):
    artifact = board.candidate("amber")
    events_before = PromotionEvent.objects.count()
    for name in ("artifact-promote", "artifact-halt"):
        response = reader_client.post(reverse(name, args=[artifact.pk]), {"reason": "I think so."})
        assert response.status_code == 403
    assert PromotionEvent.objects.count() == events_before
    page = reader_client.get(artifact.get_absolute_url()).content
    assert reverse("artifact-halt", args=[artifact.pk]).encode() not in page
    assert b"Only reviewers and admins can promote or halt" in page


def test_it_shows_staff_the_buttons_and_accepts_only_post(board, staff_page_client):
    artifact = board.candidate("amber")
    page = staff_page_client.get(artifact.get_absolute_url()).content
    assert reverse("artifact-promote", args=[artifact.pk]).encode() in page
    assert reverse("artifact-halt", args=[artifact.pk]).encode() in page
    assert b"csrfmiddlewaretoken" in page
    assert staff_page_client.get(reverse("artifact-halt", args=[artifact.pk])).status_code == 405


def test_it_requires_the_csrf_token(board, staff_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post(reverse("artifact-halt", args=[board.candidate("amber").pk]), {"reason": "No token."})
    assert response.status_code == 403
