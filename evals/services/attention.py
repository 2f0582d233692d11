"""Acknowledging what "Needs attention" lists besides alerts (failed runs, uncalibrated judges, overdue
thresholds): who, when and a note; the item leaves the list."""

from django.db import IntegrityError, transaction

from evals.models import Acknowledgement


class AcknowledgementRefused(ValueError):
    pass


def attention_acknowledge(*, kind: str, key: str, title: str, user, note: str = "") -> Acknowledgement:
    if kind not in Acknowledgement.Kind.values:
        raise AcknowledgementRefused(f"Nothing of the kind {kind!r} is listed under Needs attention.")
    try:
        with transaction.atomic():
            return Acknowledgement.objects.create(kind=kind, key=key, title=title, note=note, acknowledged_by=user)
    except IntegrityError as exc:
        raise AcknowledgementRefused(f"{title} was already acknowledged.") from exc
