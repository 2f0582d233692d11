"""Home and the Alerts page list what waits for a reviewer: open alerts (acknowledgeable, with who, when and
a note), held candidates with why they wait, and red traffic drift on production, also told first on the
production artifact's page."""

from django.urls import reverse
from django.utils import timezone

from registry import services as registry_services
from registry.models import Alert, PromotionEvent

HOLD_REASON = "Held for review: branch feature/tune-1 is not the base branch main"
TRAFFIC_REASON = "answer length worse by 31 % on window 4"


def _raise_alert(artifact, title: str = "support-gpt v6 halted: bits per byte worse by 8.0 %") -> Alert:
    return registry_services.alert_raise(
        artifact=artifact, severity=Alert.Severity.CRITICAL, title=title, message="bits per byte +8.0 %", payload={}
    )


def _traffic_red(board) -> None:
    registry_services.tags_set(
        artifact=board.production,
        tags={"traffic_drift": "red", "traffic_drift.window": 4, "traffic_drift.reason": TRAFFIC_REASON},
    )


def test_it_lists_open_alerts_held_candidates_and_production_traffic_drift_on_home(board, staff_page_client):
    held = board.candidate("amber")
    PromotionEvent.objects.create(artifact=held, action=PromotionEvent.Action.HOLD, reason=HOLD_REASON)
    alert = _raise_alert(board.candidate("red"))
    _traffic_red(board)

    page = staff_page_client.get(reverse("home")).content.decode()

    attention = page[page.index("Needs attention") :]
    assert alert.title in attention
    assert f'href="{held.get_absolute_url()}"' in attention and HOLD_REASON in attention
    assert f'href="{board.production.get_absolute_url()}"' in attention and TRAFFIC_REASON in attention


def test_it_keeps_quiet_about_green_traffic_and_acknowledged_alerts(board, staff_user, staff_page_client):
    registry_services.tags_set(artifact=board.production, tags={"traffic_drift": "green"})
    alert = _raise_alert(board.candidate("red"))
    registry_services.alert_acknowledge(alert=alert, actor=staff_user, note="")

    page = staff_page_client.get(reverse("home")).content.decode()

    assert "No open alerts." in page and "No production model drifts on its traffic." in page


def test_it_acknowledges_an_alert_with_who_when_and_note(board, staff_user, staff_page_client):
    alert = _raise_alert(board.candidate("red"))

    response = staff_page_client.post(
        reverse("alert-acknowledge", args=[alert.pk]), {"note": "Known tokenizer change, rerun queued"}
    )

    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == staff_user and alert.acknowledged_at is not None
    assert alert.acknowledgement_note == "Known tokenizer change, rerun queued"
    page = staff_page_client.get(reverse("alert-list")).content.decode()
    closed = page[page.index('id="closed-alerts"') :]
    assert alert.title in closed and "Known tokenizer change, rerun queued" in closed
    assert "No open alerts." in page


def test_it_keeps_the_first_acknowledgement(board, staff_user, user):
    alert = _raise_alert(board.candidate("red"))
    registry_services.alert_acknowledge(alert=alert, actor=staff_user, note="first")

    registry_services.alert_acknowledge(alert=alert, actor=user, note="second")

    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.acknowledgement_note) == (staff_user, "first")


def test_it_lets_only_reviewers_acknowledge(board, reader_client):
    alert = _raise_alert(board.candidate("red"))

    page = reader_client.get(reverse("alert-list")).content.decode()
    response = reader_client.post(reverse("alert-acknowledge", args=[alert.pk]), {"note": "mine"})

    assert alert.title in page and "Acknowledge</button>" not in page
    assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_it_refuses_an_overlong_note_without_acknowledging(board, staff_page_client):
    alert = _raise_alert(board.candidate("red"))

    response = staff_page_client.post(reverse("alert-acknowledge", args=[alert.pk]), {"note": "x" * 2001}, follow=True)

    assert "A note is at most 2000 characters." in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_it_tells_red_traffic_drift_first_on_the_production_page(board, staff_page_client):
    _traffic_red(board)

    page = staff_page_client.get(board.production.get_absolute_url()).content.decode()

    banner = page.index('id="traffic-drift"')
    assert TRAFFIC_REASON in page[banner:] and banner < page.index("<h2>Weights</h2>")
    assert 'id="traffic-drift"' not in staff_page_client.get(board.candidate("red").get_absolute_url()).content.decode()


def test_it_closes_an_alert_that_was_resolved(board, staff_page_client):
    alert = _raise_alert(board.candidate("red"))
    Alert.objects.filter(pk=alert.pk).update(resolved_at=timezone.now())

    page = staff_page_client.get(reverse("alert-list")).content.decode()

    assert "No open alerts." in page
    assert alert.title in page[page.index('id="closed-alerts"') :] and "Resolved" in page
