"""Writes of reviewers' labels: one label, many from another annotation tool, the cap on an
uncalibrated judge's verdicts, and staff trust in a judge configuration."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db import transaction

from evals import label_selectors
from evals.models import GoldenSample, JudgeTrust, Label
from registry.models import Artifact, ModelFamily

MAX_NOTE_CHARS = 5000


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
    return _store(reviewer, given, sample, keys)


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
