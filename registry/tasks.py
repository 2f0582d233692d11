import logging

from celery import shared_task
from django.conf import settings

from registry.alerting import DeliveryFailed, alert_delivery_give_up, alert_delivery_send
from registry.models import Alert, AlertDelivery, Artifact
from registry.publishing import artifact_publish, retry_delay
from registry.services import alert_deliver
from registry.storage import staging_sweep

logger = logging.getLogger(__name__)

PUBLISH_MAX_RETRIES = 8


@shared_task(bind=True, max_retries=8, acks_late=True)
def deliver_alert(self, alert_id: int) -> None:
    alert = Alert.objects.filter(pk=alert_id, delivered_at=None).select_related("artifact").first()
    if alert is None:
        return
    try:
        alert_deliver(alert=alert)
    except OSError as exc:
        alert.delivery_error = str(exc)[:1000]
        alert.save(update_fields=["delivery_error"])
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 300)) from exc


@shared_task(bind=True, max_retries=PUBLISH_MAX_RETRIES, acks_late=True)
def deliver_alert_channel(self, delivery_id: int) -> None:
    """Send one logged alert delivery; retried with back-off (or as the service asked) while it may help."""
    delivery = (
        AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING)
        .select_related("channel", "alert__artifact__family")
        .first()
    )
    if delivery is None:
        return
    try:
        alert_delivery_send(delivery=delivery)
    except DeliveryFailed as exc:
        if self.request.retries >= self.max_retries:
            alert_delivery_give_up(delivery=delivery)
            return
        delay = exc.wait_seconds if exc.wait_seconds is not None else 2**self.request.retries
        raise self.retry(exc=exc, countdown=min(delay, 300)) from exc


@shared_task(bind=True, max_retries=PUBLISH_MAX_RETRIES, acks_late=True)
def publish_artifact(self, artifact_id: int) -> None:
    """Post the artifact's current status (and comment, once scored) to its pull request."""
    artifact = (
        Artifact.objects.select_related("family", "pull_request")
        .filter(pk=artifact_id, pull_request__isnull=False)
        .first()
    )
    if artifact is None:
        return
    try:
        artifact_publish(artifact=artifact)
    except OSError as exc:
        delay = retry_delay(exc, self.request.retries)
        if delay is None:
            logger.warning("Publishing artifact %s to %s failed for good: %s", artifact_id, artifact.pull_request, exc)
            return
        raise self.retry(exc=exc, countdown=delay) from exc


@shared_task(ignore_result=True)
def sweep_staging() -> int:
    """Remove staging leftovers of requests that died (beat, every CELERY_BEAT_STAGING_SWEEP_SECONDS)."""
    return staging_sweep(older_than_seconds=settings.DRIFTBOARD_STAGING_MAX_AGE_SECONDS)
