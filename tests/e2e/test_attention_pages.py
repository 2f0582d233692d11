"""In Chromium: Home and the Alerts page list what needs attention with nothing overflowing its card at 1280
and 1920 px, and a reviewer acknowledges an alert in one step."""

import pytest
from django.urls import reverse

from registry import services as registry_services
from registry.models import Alert, PromotionEvent

pytestmark = pytest.mark.browser

OVERFLOWING = """() => [...document.querySelectorAll('.card')].filter((card) => card.scrollWidth > card.clientWidth + 1)
  .map((card) => card.id || card.querySelector('h2')?.textContent)"""
LONG_REASON = "window 4: answer length worse by 31 % on /srv/traffic/" + "x" * 120


def attention(board):
    PromotionEvent.objects.create(
        artifact=board.candidate("amber"), action=PromotionEvent.Action.HOLD, reason="Held: branch " + "y" * 120
    )
    registry_services.tags_set(
        artifact=board.production, tags={"traffic_drift": "red", "traffic_drift.reason": LONG_REASON}
    )
    return registry_services.alert_raise(
        artifact=board.candidate("red"),
        severity=Alert.Severity.CRITICAL,
        title="support-gpt halted: bits per byte worse by 8.0 %",
        message="sha256 " + "f" * 200,
        payload={},
    )


@pytest.mark.parametrize("width", [1280, 1920])
def test_it_lists_what_needs_attention_with_nothing_overflowing(open_page, reviewer, live_board, width):
    attention(live_board)
    page, errors = open_page(reviewer)
    page.set_viewport_size({"width": width, "height": 900})

    for url in (reverse("home"), reverse("alert-list")):
        page.goto(url)
        assert page.locator("#attention-traffic li").count() == 1
        assert page.locator("#attention-held li", has_text="Held: branch").count() == 1
        assert page.evaluate(OVERFLOWING) == []
    assert errors == []


def test_it_acknowledges_an_alert_from_the_alerts_page(open_page, reviewer, live_board):
    alert = attention(live_board)
    page, errors = open_page(reviewer)
    page.goto(reverse("alert-list"))

    page.locator(f"#alert-{alert.pk} input[name=note]").fill("Known: the drifted fine-tune")
    page.locator(f"#alert-{alert.pk} button", has_text="Acknowledge").click()

    page.locator("#closed-alerts", has_text="Known: the drifted fine-tune").wait_for()
    assert page.locator("#open-alerts").count() == 0
    assert errors == []
