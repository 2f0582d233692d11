"""Reviewers' labels as metrics of the artifact they label (`human_preference`, `human_pass_rate`; see
evals/scoring/scorers/human_labels.py): once an artifact has `min_labels` labelled items of a kind on a
dataset (the family's judge setting), a snapshot holds one value per item, and the verdict compares it
like a judge's preference. Pairwise labels count only against the artifact's current baseline."""

import numpy as np
from django.conf import settings
from django.db import transaction

from evals.label_selectors import family_judge_settings
from evals.models import DriftVerdict, Label, MetricSnapshot
from evals.scoring.scorers import METRICS
from evals.scoring.scorers.human_labels import HUMAN_PASS_RATE, HUMAN_PREFERENCE, per_item_values
from evals.scoring.summary import summarise
from evals.selectors import baseline_for
from registry.models import Artifact

HUMAN_METRICS = {Label.Kind.PAIRWISE: HUMAN_PREFERENCE.name, Label.Kind.POINTWISE: HUMAN_PASS_RATE.name}
SCORER_VERSION = "human-labels:1"


def _labels(artifact: Artifact, kind: str, baseline: Artifact | None):
    labels = Label.objects.filter(artifact=artifact, kind=kind)
    if kind == Label.Kind.PAIRWISE:
        if baseline is None:
            return Label.objects.none()
        labels = labels.filter(baseline_weights_sha256=baseline.sha256)
    return labels.select_related("sample")


def human_snapshots_refresh(*, artifact: Artifact) -> list[str]:
    """Write the artifact's human metrics from its labels (remove one whose items fell under `min_labels`).
    The metrics whose snapshot was written or removed."""
    baseline = baseline_for(artifact)
    min_labels = int(family_judge_settings(artifact.family)["min_labels"])
    changed = []
    with transaction.atomic():
        for kind, metric in HUMAN_METRICS.items():
            by_dataset: dict[int, list[tuple[int, str, str]]] = {}
            for label in _labels(artifact, kind, baseline):
                by_dataset.setdefault(label.sample.dataset_id, []).append(
                    (label.sample.position, label.value, label.sample.category)
                )
            # The datasets with enough labelled items (an item: a sample, however many reviewers labelled it).
            enough = {d: rows for d, rows in by_dataset.items() if len({row[0] for row in rows}) >= min_labels}
            stale = MetricSnapshot.objects.filter(artifact=artifact, metric=metric).exclude(dataset_id__in=enough)
            if stale.exists():
                DriftVerdict.objects.filter(
                    artifact=artifact, metric=metric, dataset__in=stale.values("dataset")
                ).delete()
                stale.delete()
                changed.append(metric)
            for dataset_id, rows in enough.items():
                _snapshot_write(artifact, dataset_id, metric, rows, baseline)
                changed.append(metric)
    return sorted(set(changed))


def _snapshot_write(
    artifact: Artifact, dataset_id: int, metric: str, rows: list[tuple[int, str, str]], baseline: Artifact | None
) -> None:
    positions, values = per_item_values(metric, [(position, value) for position, value, _ in rows])
    category = {position: category for position, _, category in rows}
    ones = np.ones_like(values)
    summary = summarise(
        METRICS[metric],
        values,
        ones,
        [category[int(p)] for p in positions],
        n_boot=settings.DRIFTBOARD_BOOTSTRAP_RESAMPLES,
        seed=artifact.pk,
    )
    MetricSnapshot.objects.update_or_create(
        artifact=artifact,
        dataset_id=dataset_id,
        metric=metric,
        defaults={
            "run": None,
            "scorer_version": SCORER_VERSION,
            "commit_sha": artifact.commit_sha,
            "value": summary.value,
            "n": summary.n,
            "std": summary.std,
            "ci_low": summary.ci_low,
            "ci_high": summary.ci_high,
            "complete": False,
            "positions": positions.astype(np.int32).tobytes(),
            "numerators": values.tobytes(),
            "denominators": ones.tobytes(),
            "per_category": summary.per_category,
            "fingerprint": {
                "scorer_version": SCORER_VERSION,
                "human": {"baseline": baseline.pk if baseline else None, "labels": len(rows), "items": len(values)},
            },
        },
    )
