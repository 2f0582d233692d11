"""Writes of reviewers' labels: one label, many from another annotation tool, the cap on an
uncalibrated judge's verdicts, and staff trust in a judge configuration."""

import datetime
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from django.db import transaction
from django.utils import timezone

from driftboard.queues import enqueue
from evals import label_selectors
from evals.models import GoldenSample, JudgeTrust, Label, ReviewReservation
from registry.models import Artifact, ModelFamily

MAX_NOTE_CHARS = 5000
# Long enough to read two answers and decide; a reviewer who walks away frees the item soon after.
RESERVATION_TIME = datetime.timedelta(minutes=5)
PAIRWISE_KEYS = {"1": "first", "2": "second", "3": "tie"}
PAIRWISE_SIDES = ("candidate", "baseline")


class LabelRefused(ValueError):
    """A label that cannot be stored; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LabelInput:
    artifact: Artifact
    sample: str
    kind: str
    value: str
    rating: int | None = None
    note: str = ""
    shown_first: str = ""


def _checked(given: LabelInput) -> tuple[GoldenSample, dict]:
    """The golden sample and the answer keys a label is stored with, or `LabelRefused`."""
    if given.kind not in Label.VALUES:
        raise LabelRefused("kind", f"kind must be one of {', '.join(Label.VALUES)}, not {given.kind!r}.")
    if given.value not in Label.VALUES[given.kind]:
        allowed = ", ".join(Label.VALUES[given.kind])
        raise LabelRefused("value", f"a {given.kind} label's value is one of {allowed}, not {given.value!r}.")
    if given.rating is not None and (given.kind != Label.Kind.POINTWISE or not 1 <= given.rating <= 10):
        raise LabelRefused("rating", "rating is a whole number from 1 to 10, on a pointwise label only.")
    if len(given.note) > MAX_NOTE_CHARS:
        raise LabelRefused("note", f"note must be at most {MAX_NOTE_CHARS} characters, not {len(given.note)}.")
    source = label_selectors.review_source(given.artifact)
    if source is None:
        raise LabelRefused("artifact", f"v{given.artifact.version} has no generated answers to label.")
    sample = GoldenSample.objects.filter(dataset_id=source.dataset_id, sample_id=given.sample).first()
    if sample is not None and sample.turns is not None:
        raise LabelRefused(
            "sample",
            f"sample {given.sample!r} is a conversation: its judges read it whole, and labels are given on single answers.",
        )
    items = label_selectors.review_items(source, [sample.position]) if sample else []
    if not items:
        raise LabelRefused("sample", f"v{given.artifact.version} has no stored answer to sample {given.sample!r}.")
    if given.kind == Label.Kind.PAIRWISE and items[0].baseline is None:
        raise LabelRefused("kind", f"v{given.artifact.version} has no baseline answer to sample {given.sample!r}.")
    keys = {
        "weights_sha256": source.candidate.weights_sha256,
        "prompt_sha256": label_selectors.sample_prompt_sha256(sample),
        "config_sha256": source.candidate.config_sha256,
        "chat_template_sha256": source.candidate.chat_template_sha256,
        "engine_version": source.candidate.engine_version,
        "baseline_weights_sha256": source.baseline.weights_sha256
        if given.kind == Label.Kind.PAIRWISE and source.baseline
        else "",
    }
    return sample, keys


def label_save(*, reviewer, given: LabelInput) -> tuple[Label, bool]:
    """Store the reviewer's label of an item, or update theirs (the history keeps the old one).
    Returns (label, created)."""
    sample, keys = _checked(given)
    stored = _store(reviewer, given, sample, keys)
    transaction.on_commit(partial(_human_metrics_refresh, {given.artifact.pk}))
    return stored


def _store(reviewer, given: LabelInput, sample: GoldenSample, keys: dict) -> tuple[Label, bool]:
    with transaction.atomic():
        label, created = Label.objects.update_or_create(
            reviewer=reviewer,
            artifact=given.artifact,
            sample=sample,
            kind=given.kind,
            defaults={
                "value": given.value,
                "rating": given.rating,
                "note": given.note,
                "shown_first": given.shown_first,
                **keys,
            },
        )
    return label, created


def _human_metrics_refresh(artifact_ids: set[int]) -> None:
    """Once labels commit, their artifacts' human metrics are rewritten on the publish queue."""
    from evals.tasks import refresh_human_metrics

    for artifact_id in sorted(artifact_ids):
        enqueue(refresh_human_metrics, artifact_id, what="its human metrics wait for the next label")


def labels_import(*, reviewer, rows: Sequence[LabelInput | Mapping[str, str]]) -> list[dict]:
    """Store labels made elsewhere, all or none: the errors by row number (1-based), empty when all
    were stored. A row is a `LabelInput`, or the error already found in it (`{"field": message}`)."""
    errors, checked = [], []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, LabelInput):
            errors.append({"row": number, "errors": dict(row)})
            continue
        try:
            checked.append((row, *_checked(row)))
        except LabelRefused as exc:
            errors.append({"row": number, "errors": {exc.field: str(exc)}})
    if errors:
        return errors
    with transaction.atomic():
        for row, sample, keys in checked:
            _store(reviewer, row, sample, keys)
        transaction.on_commit(partial(_human_metrics_refresh, {row.artifact.pk for row, _, _ in checked}))
    return []


def verdict_judge_cap(snapshot, fields: dict) -> dict:
    """A judge metric's verdict when its judge configuration is uncalibrated: the statistics kept, the
    outcome at most amber, and the reason (κ, its interval, the labels) among the reasons."""
    if fields.get("outcome") == "incomparable":
        return fields
    agreement = label_selectors.snapshot_judge_agreement(snapshot)
    if agreement is None or agreement.calibrated:
        return fields
    capped = "amber" if fields["outcome"] == "red" else fields["outcome"]
    reason = f"{agreement.reason} (at most amber until it agrees with reviewers or staff trust it)"
    return {**fields, "outcome": capped, "reasons": [*fields.get("reasons", []), reason]}


def judge_trust(
    *, family: ModelFamily, configuration: label_selectors.JudgeConfiguration, actor, reason: str
) -> JudgeTrust:
    """A staff user's decision that the configuration may push verdicts past amber (an event)."""
    if not reason.strip():
        raise LabelRefused("reason", "Say why this judge is trusted without enough agreeing labels.")
    trust, _ = JudgeTrust.objects.get_or_create(
        family=family,
        configuration=configuration.key,
        defaults={"identity": configuration.identity, "mode": configuration.mode, "reason": reason, "actor": actor},
    )
    return trust


# The review queue in the browser


@dataclass(frozen=True)
class ReviewTurn:
    """The item shown to a reviewer: the answers (pairwise: `shown_first` is which one comes first,
    never shown), the reviewer's own label if they labelled it already, and the queue around it."""

    item: label_selectors.ReviewItem
    kind: str
    shown_first: str
    label: Label | None
    left: int
    total: int
    previous: str | None
    next: str | None

    @property
    def shown(self) -> list:
        """Pairwise: the two answers in the order shown; empty for pointwise."""
        if not self.shown_first:
            return []
        answers = {"candidate": self.item.candidate, "baseline": self.item.baseline}
        return [answers[self.shown_first], answers[_other_side(self.shown_first)]]


def _other_side(side: str) -> str:
    return "baseline" if side == "candidate" else "candidate"


def _reserve(*, source, reviewer, kind: str, sample: GoldenSample, shown_first: str) -> bool:
    """Hold the item for the reviewer; False when another reviewer holds it (the older hold wins, so two
    reviewers claiming the same item at once end with one of them holding it)."""
    now = timezone.now()
    mine, _ = ReviewReservation.objects.update_or_create(
        artifact=source.artifact,
        sample=sample,
        kind=kind,
        reviewer=reviewer,
        defaults={"shown_first": shown_first, "expires_at": now + RESERVATION_TIME},
    )
    held = ReviewReservation.objects.filter(
        artifact=source.artifact, sample=sample, kind=kind, expires_at__gt=now, id__lt=mine.id
    ).exclude(reviewer=reviewer)
    if held.exists():
        mine.delete()
        return False
    ReviewReservation.objects.filter(reviewer=reviewer).exclude(id=mine.id).delete()
    return True


def review_turn(*, artifact, reviewer, kind: str, at: str | None = None) -> ReviewTurn | None:
    """The item to show the reviewer next, reserved for them: the sample `at` when asked for (one they
    labelled, to change it, or one nobody else holds), else the first in the queue's order that has
    fewer than `reviewers_per_item` labels, none of them theirs, and that no other reviewer holds.
    None when nothing is left."""
    source = label_selectors.review_source(artifact)
    if source is None or (kind == Label.Kind.PAIRWISE and source.baseline is None):
        return None
    settings = label_selectors.family_judge_settings(artifact.family)
    order = label_selectors.review_order(
        source, kind, pass_rating=settings["pass_rating"], seed=artifact.pk * 7919 + reviewer.pk
    )
    samples = {s.position: s for s in GoldenSample.objects.filter(dataset_id=source.dataset_id, position__in=order)}
    labels = list(Label.objects.filter(artifact=artifact, kind=kind, sample__dataset_id=source.dataset_id))
    mine = {label.sample_id: label for label in labels if label.reviewer_id == reviewer.pk}
    counts: dict[int, int] = {}
    for label in labels:
        counts[label.sample_id] = counts.get(label.sample_id, 0) + 1
    open_positions = [
        p
        for p in order
        if p in samples and samples[p].pk not in mine and counts.get(samples[p].pk, 0) < settings["reviewers_per_item"]
    ]
    wanted = [p for p in order if p in samples and samples[p].sample_id == at] if at else open_positions
    for position in wanted:
        sample = samples[position]
        label = mine.get(sample.pk)
        shown_first = ""
        if kind == Label.Kind.PAIRWISE:
            shown_first = label.shown_first if label and label.shown_first else secrets.choice(PAIRWISE_SIDES)
        if not _reserve(source=source, reviewer=reviewer, kind=kind, sample=sample, shown_first=shown_first):
            continue
        items = label_selectors.review_items(source, [position])
        if not items:
            continue
        index = order.index(position)
        return ReviewTurn(
            item=items[0],
            kind=kind,
            shown_first=shown_first,
            label=label,
            left=len(open_positions),
            total=len(order),
            previous=samples[order[index - 1]].sample_id if index > 0 and order[index - 1] in samples else None,
            next=samples[order[index + 1]].sample_id
            if index + 1 < len(order) and order[index + 1] in samples
            else None,
        )
    return None


def review_label(
    *, artifact, reviewer, kind: str, sample: str, choice: str, rating: int | None = None, note: str = ""
) -> Label:
    """Store the reviewer's label of the item they were shown: pairwise `1` (the answer shown first),
    `2` (the second) or `3` (a tie), turned into candidate/baseline terms with the order their
    reservation drew; pointwise `good` or `bad`. The reservation is released."""
    reservation = ReviewReservation.objects.filter(
        artifact=artifact, sample__sample_id=sample, kind=kind, reviewer=reviewer
    ).first()
    value = choice
    shown_first = ""
    if kind == Label.Kind.PAIRWISE:
        if reservation is None or not reservation.shown_first:
            raise LabelRefused("sample", "This item is no longer held for you: it was reloaded, label it again.")
        if choice not in PAIRWISE_KEYS:
            raise LabelRefused("value", "Press 1 (the first answer), 2 (the second) or 3 (a tie).")
        shown_first = reservation.shown_first
        value = {"first": shown_first, "second": _other_side(shown_first), "tie": "tie"}[PAIRWISE_KEYS[choice]]
    given = LabelInput(
        artifact=artifact, sample=sample, kind=kind, value=value, rating=rating, note=note, shown_first=shown_first
    )
    label, _ = label_save(reviewer=reviewer, given=given)
    if reservation is not None:
        reservation.delete()
    return label
