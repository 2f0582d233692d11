from celery import shared_task

from registry.models import Alert
from registry.services import alert_deliver


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
