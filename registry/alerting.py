"""Alert channels: where an alert is sent (a JSON webhook, a Slack incoming webhook, PagerDuty's Events
API v2, e-mail), which alerts each hears of (families, minimum severity), and the delivery log.

Every URL goes through the alert outbound policy (driftboard/outbound.py, DRIFTBOARD_ALERT_HOSTS): its
addresses are checked when connecting and no redirect is followed, so a Slack URL or a PagerDuty routing
key never reaches a host it was not meant for. A delivery's error describes the reply (its status, a
service's documented error code) and never quotes the URL, which is itself the secret for Slack.
"""

import json
import logging
from functools import partial
from urllib.parse import urlsplit

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from driftboard import links
from driftboard.outbound import OutboundRefused, alert_policy, url_problem
from driftboard.queues import enqueue
from registry.http import header
from registry.models import Alert, AlertChannel, AlertDelivery, ModelFamily

logger = logging.getLogger(__name__)

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY_RANK = {Alert.Severity.WARNING: 0, Alert.Severity.CRITICAL: 1}
TIMEOUT_SECONDS = 10
# Slack's documented incoming-webhook error codes: named in the delivery log; any other body is not.
SLACK_ERRORS = frozenset(
    {
        "invalid_payload",
        "invalid_token",
        "action_prohibited",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "channel_not_found",
        "channel_is_archived",
        "posting_to_general_channel_denied",
        "user_not_found",
        "no_active_hooks",
        "too_many_attachments",
        "missing_text_or_fallback_or_attachments",
        "rollup_error",
    }
)


class DeliveryRefused(Exception):
    """The service refused the message for good (a bad URL, key or payload): retrying cannot help."""


class DeliveryFailed(OSError):
    """The service could not take the message now (5xx, 429, the network): retried with back-off."""

    def __init__(self, message: str, *, wait_seconds: float | None = None):
        super().__init__(message)
        self.wait_seconds = wait_seconds


def channel_problem(*, kind: str, url: str, routing_key: str, to: str) -> tuple[str, str] | None:
    """Why a channel cannot be saved as given, as (field, reason), or None."""
    needs = {
        AlertChannel.Kind.WEBHOOK: "url",
        AlertChannel.Kind.SLACK: "url",
        AlertChannel.Kind.PAGERDUTY: "routing_key",
        AlertChannel.Kind.EMAIL: "to",
    }[kind]
    given = {"url": url, "routing_key": routing_key, "to": to}
    if not given[needs]:
        return needs, f"a {kind} channel needs `{needs}`."
    if url:
        if problem := url_problem(url):
            return "url", f"the URL {problem}."
        policy = alert_policy()
        if policy.allowed_hosts and not policy.listed(*_host_port(url)):
            return "url", "the URL's host is not in DRIFTBOARD_ALERT_HOSTS."
    return None


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def channels_for(alert: Alert) -> list[AlertChannel]:
    """The active channels that hear of the alert: its family listed (or none listed), severity enough."""
    slug = alert.artifact.family.slug
    return [
        channel
        for channel in AlertChannel.objects.filter(active=True)
        if (not channel.families or slug in channel.families)
        and SEVERITY_RANK[alert.severity] >= SEVERITY_RANK[channel.min_severity]
    ]


def alert_deliveries_create(*, alert: Alert, action: str) -> list[AlertDelivery]:
    """Log one delivery per channel and send each on the publish queue once the transaction commits. A
    resolution goes to the channels that were sent the alert."""
    if action == AlertDelivery.Action.TRIGGER:
        channels = channels_for(alert)
    else:
        channels = list(
            AlertChannel.objects.filter(
                active=True, deliveries__alert=alert, deliveries__action=AlertDelivery.Action.TRIGGER
            ).distinct()
        )
    deliveries = AlertDelivery.objects.bulk_create(
        [AlertDelivery(channel=channel, alert=alert, action=action) for channel in channels]
    )
    for delivery in deliveries:
        transaction.on_commit(partial(_send_later, delivery.pk))
    return deliveries


def _send_later(delivery_id: int) -> None:
    from registry.tasks import deliver_alert_channel

    enqueue(deliver_alert_channel, delivery_id, what="the delivery stays pending in the log")


def alerts_resolve(*, family: ModelFamily, cause_prefix: str) -> list[Alert]:
    """Resolve the family's open alerts whose cause starts with `cause_prefix` (the family recovered) and
    tell the channels that heard of them."""
    key = f"{family.slug}:{cause_prefix}"
    open_alerts = list(Alert.objects.filter(dedup_key__startswith=key, resolved_at=None))
    Alert.objects.filter(pk__in=[alert.pk for alert in open_alerts]).update(resolved_at=timezone.now())
    for alert in open_alerts:
        alert_deliveries_create(alert=alert, action=AlertDelivery.Action.RESOLVE)
    return open_alerts


def alert_delivery_send(*, delivery: AlertDelivery) -> None:
    """Send one logged delivery and record the outcome. Raises DeliveryFailed when a retry may help; a
    refusal (DeliveryRefused, OutboundRefused) is recorded as failed for good."""
    AlertDelivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts + 1)
    delivery.attempts += 1
    try:
        SENDERS[delivery.channel.kind](delivery)
    except (DeliveryRefused, OutboundRefused) as exc:
        _record(delivery, AlertDelivery.Status.FAILED, str(exc))
        return
    except OSError as exc:
        _record(delivery, AlertDelivery.Status.PENDING, str(exc))
        raise exc if isinstance(exc, DeliveryFailed) else DeliveryFailed(str(exc)) from exc
    _record(delivery, AlertDelivery.Status.DELIVERED, "")


def alert_delivery_give_up(*, delivery: AlertDelivery) -> None:
    """The retries are spent: the log says failed, with the last error."""
    AlertDelivery.objects.filter(pk=delivery.pk, status=AlertDelivery.Status.PENDING).update(
        status=AlertDelivery.Status.FAILED
    )


def _record(delivery: AlertDelivery, status: str, error: str) -> None:
    delivery.status, delivery.error = status, error[:500]
    delivery.delivered_at = timezone.now() if status == AlertDelivery.Status.DELIVERED else None
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        status=delivery.status, error=delivery.error, delivered_at=delivery.delivered_at
    )


def _page_url(alert: Alert) -> str:
    return links.absolute_url(alert.artifact.get_absolute_url())


def _post(url: str, body: bytes, service: str) -> tuple[int, dict[str, str], bytes]:
    """POST through the alert policy. A redirect is a refusal: following it could hand the URL's secret or
    the routing key to another host."""
    status, headers, raw = alert_policy().request(
        "POST",
        url,
        body=body,
        headers={"Content-Type": "application/json", "User-Agent": "driftboard"},
        timeout=TIMEOUT_SECONDS,
    )
    if 300 <= status < 400:
        raise DeliveryRefused(f"{service} answered HTTP {status} (a redirect, not followed)")
    if status == 429 or status >= 500:
        retry_after = header(headers, "Retry-After")
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        raise DeliveryFailed(f"{service} answered HTTP {status}; retrying", wait_seconds=wait)
    return status, headers, raw


def _json(body: dict) -> bytes:
    return json.dumps(body).encode()


def _send_webhook(delivery: AlertDelivery) -> None:
    alert = delivery.alert
    body = {
        "action": delivery.action,
        "title": alert.title,
        "severity": alert.severity,
        "message": alert.message,
        "artifact": alert.artifact_id,
        "url": _page_url(alert),
        "dedup_key": alert.dedup_key,
        "created_at": alert.created_at.isoformat(),
        **alert.payload,
    }
    status, _, raw = _post(delivery.channel.url, _json(body), "The webhook")
    if not 200 <= status < 300:
        raise DeliveryRefused(f"The webhook answered HTTP {status} ({len(raw):,} bytes)")


def slack_message(alert: Alert, action: str) -> dict:
    """A Block Kit message: the title, the why-line, the alert's facts as fields and a link to the page."""
    resolved = action == AlertDelivery.Action.RESOLVE
    title = f"Resolved: {alert.title}" if resolved else alert.title
    facts = [
        {"type": "mrkdwn", "text": f"*{name.replace('_', ' ')}*\n{value}"}
        for name, value in alert.payload.items()
        if isinstance(value, str | int | float)
    ][:10]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": alert.message[:3000] or alert.title}},
    ]
    if facts:
        blocks.append({"type": "section", "fields": facts})
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open in Driftboard"},
                    "url": _page_url(alert),
                }
            ],
        }
    )
    return {"text": f"{title}: {alert.message}"[:3000], "blocks": blocks}


def _send_slack(delivery: AlertDelivery) -> None:
    status, _, raw = _post(delivery.channel.url, _json(slack_message(delivery.alert, delivery.action)), "Slack")
    if status == 200:
        return
    code = raw.decode(errors="replace").strip()
    raise DeliveryRefused(f"Slack answered HTTP {status}" + (f" ({code})" if code in SLACK_ERRORS else ""))


def pagerduty_event(alert: Alert, action: str, routing_key: str) -> dict:
    """An Events API v2 event: a trigger with its summary, severity and link, or a resolve; both keyed by
    the alert's family and cause, so PagerDuty keeps one incident per family and cause."""
    event = {"routing_key": routing_key, "event_action": action, "dedup_key": f"driftboard:{alert.dedup_key}"}
    if action == AlertDelivery.Action.TRIGGER:
        event["payload"] = {
            "summary": f"{alert.title}: {alert.message}"[:1024],
            "source": "driftboard",
            "severity": "critical" if alert.severity == Alert.Severity.CRITICAL else "warning",
            "component": alert.artifact.family.slug,
            "custom_details": alert.payload,
        }
        event["links"] = [{"href": _page_url(alert), "text": "Open in Driftboard"}]
    return event


def _send_pagerduty(delivery: AlertDelivery) -> None:
    channel = delivery.channel
    event = pagerduty_event(delivery.alert, delivery.action, channel.routing_key)
    status, _, raw = _post(channel.url or PAGERDUTY_EVENTS_URL, _json(event), "PagerDuty")
    if status == 202:
        return
    if status == 400:
        raise DeliveryRefused("PagerDuty answered HTTP 400: the event is invalid (check the routing key)")
    raise DeliveryRefused(f"PagerDuty answered HTTP {status} ({len(raw):,} bytes)")


def _send_email(delivery: AlertDelivery) -> None:
    alert = delivery.alert
    prefix = "Resolved: " if delivery.action == AlertDelivery.Action.RESOLVE else ""
    recipients = [address.strip() for address in delivery.channel.to.split(",") if address.strip()]
    send_mail(
        subject=f"[Driftboard] {prefix}{alert.title}"[:250],
        message=f"{alert.message}\n\n{_page_url(alert)}\n",
        from_email=None,
        recipient_list=recipients,
    )


SENDERS = {
    AlertChannel.Kind.WEBHOOK: _send_webhook,
    AlertChannel.Kind.SLACK: _send_slack,
    AlertChannel.Kind.PAGERDUTY: _send_pagerduty,
    AlertChannel.Kind.EMAIL: _send_email,
}
