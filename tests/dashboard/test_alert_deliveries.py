"""The Alerts page shows, under each alert, what its channels were sent: channel, trigger or resolve, status,
attempts, the last error and when, as text, in a constant number of queries."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from registry import alerting
from registry import services as registry_services
from registry.models import Alert, AlertChannel
from tests.publishing.forge import run_tasks_eagerly

HOSTILE = '<script>alert("owned")</script>'


def raise_red(artifact, capture, message: str = "bits per byte +8.0 %") -> Alert:
    """A red alert, sent to the channels as the publish worker sends it (a newer one of the same family and
    cause closes the one before)."""
    with capture(execute=True):
        return registry_services.alert_raise(
            artifact=artifact,
            severity=Alert.Severity.CRITICAL,
            title=f"{artifact.family.slug} v{artifact.version} halted",
            message=message,
            payload={},
            cause="drift:bits_per_byte",
        )


def deliveries_of(page: str, alert: Alert) -> str:
    start = page.index(f'id="alert-{alert.pk}-deliveries"')
    return page[start : page.index("</div>", page.index("</table>", start))]


def test_it_lists_each_alert_s_deliveries_under_it(
    board, staff_page_client, settings, mailoutbox, django_capture_on_commit_callbacks
):
    run_tasks_eagerly(settings)
    settings.DRIFTBOARD_ALERT_HOSTS = []  # loopback is refused: that delivery fails at once
    AlertChannel.objects.create(kind=AlertChannel.Kind.EMAIL, name="ML on-call", to="oncall@example.com")
    AlertChannel.objects.create(kind=AlertChannel.Kind.WEBHOOK, name=HOSTILE, url="http://127.0.0.1:9/hook")
    alert = raise_red(board.candidate("red"), django_capture_on_commit_callbacks)

    page = staff_page_client.get(reverse("alert-list")).content.decode()

    log = deliveries_of(page[page.index('id="open-alerts"') :], alert)
    rows = log.split("<tr data-delivery=")[1:]
    assert len(rows) == 2 and len(mailoutbox) == 1
    mailed, refused = rows
    assert "E-mail · ML on-call" in mailed and "Trigger" in mailed and "Delivered" in mailed
    assert '<td class="num">1</td>' in mailed and "delivered " in mailed and "—" in mailed
    assert "Webhook (JSON) · &lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;" in refused
    assert (
        "Failed" in refused and '<td class="num">1</td>' in refused and "loopback" in refused and "logged " in refused
    )
    assert HOSTILE not in page

    with django_capture_on_commit_callbacks(execute=True):
        alerting.alerts_resolve(family=alert.artifact.family, cause_prefix="drift:")
    page = staff_page_client.get(reverse("alert-list")).content.decode()

    closed = deliveries_of(page[page.index('id="closed-alerts"') :], alert)
    assert closed.count("Resolve") == 2 and closed.index("Trigger") < closed.index("Resolve")


def test_it_says_when_no_channel_was_sent_an_alert(board, staff_page_client, django_capture_on_commit_callbacks):
    alert = raise_red(board.candidate("red"), django_capture_on_commit_callbacks)

    page = staff_page_client.get(reverse("alert-list")).content.decode()

    section = page[page.index(f'id="alert-{alert.pk}-deliveries"') :]
    assert section.index("No alert channel was sent this alert.") < section.index("</div>")


def test_it_reads_the_deliveries_in_a_constant_number_of_queries(
    board, staff_page_client, settings, mailoutbox, django_capture_on_commit_callbacks
):
    run_tasks_eagerly(settings)
    AlertChannel.objects.create(kind=AlertChannel.Kind.EMAIL, to="oncall@example.com")
    raise_red(board.candidate("red"), django_capture_on_commit_callbacks)
    raise_red(board.candidate("red"), django_capture_on_commit_callbacks, message="bits per byte +9.0 %")
    with CaptureQueriesContext(connection) as two:  # one open alert, one closed
        staff_page_client.get(reverse("alert-list"))
    AlertChannel.objects.create(kind=AlertChannel.Kind.EMAIL, to="ml@example.com")
    for percent in range(10, 15):
        raise_red(board.candidate("amber"), django_capture_on_commit_callbacks, message=f"bits per byte +{percent} %")

    with CaptureQueriesContext(connection) as seven:  # one open, six closed
        page = staff_page_client.get(reverse("alert-list")).content.decode()

    assert page.count("<tr data-delivery=") == 1 + 1 + 5 * 2  # each alert's trigger to each channel then
    assert len(seven.captured_queries) == len(two.captured_queries)
