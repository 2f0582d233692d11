"""Traffic windows: a family's windows, the samples the production model did worst on, the chart's data."""

from dataclasses import dataclass

import numpy as np
from django.db.models import QuerySet

from evals.models import GoldenSample, MetricSnapshot, TrafficWindow
from evals.scoring.scorers import METRICS
from evals.selectors.metrics import metric_label
from registry.models import ModelFamily

SURPRISING_TEXT_CHARS = 2000


def traffic_windows(family: ModelFamily) -> QuerySet[TrafficWindow]:
    """A family's windows in time order, with what the pages and the API show of each."""
    return TrafficWindow.objects.filter(family=family).select_related("dataset", "artifact", "promoted_to", "run")


def traffic_latest_scored(family: ModelFamily) -> TrafficWindow | None:
    """The family's most recent window with an outcome."""
    scored = TrafficWindow.objects.filter(family=family).exclude(outcome=TrafficWindow.Outcome.PENDING)
    return scored.select_related("artifact").order_by("-starts_at", "-number").first()


def traffic_window(family: ModelFamily, number: int) -> TrafficWindow:
    return traffic_windows(family).select_related("reference_dataset", "reference_window").get(number=number)


@dataclass(frozen=True)
class SurprisingSample:
    position: int
    sample_id: str
    category: str
    text: str
    value: float


def traffic_surprising(window: TrafficWindow, limit: int = 20) -> list[SurprisingSample]:
    """The window's samples the production model did worst on: the most surprising (highest bits per
    byte), or for a higher-is-better metric such as similarity the lowest values."""
    snapshot = MetricSnapshot.objects.filter(
        artifact_id=window.artifact_id, dataset_id=window.dataset_id, metric=window.metric
    ).first()
    if snapshot is None:
        return []
    positions, numerators, denominators = snapshot.arrays()
    values = numerators / denominators
    worse_first = values if METRICS[snapshot.metric].direction == "lower" else -values
    order = np.lexsort((positions, -worse_first))[:limit]
    wanted = [int(positions[i]) for i in order]
    samples = {s.position: s for s in GoldenSample.objects.filter(dataset_id=window.dataset_id, position__in=wanted)}
    return [
        SurprisingSample(
            position=p,
            sample_id=samples[p].sample_id,
            category=samples[p].category,
            text=samples[p].text[:SURPRISING_TEXT_CHARS],
            value=float(values[i]),
        )
        for p, i in zip(wanted, order, strict=True)
        if p in samples
    ]


def traffic_chart_data(windows: list[TrafficWindow]) -> dict:
    """What static/js/traffic.js draws: one point per scored window, and every window's category mix."""
    points = []
    for w in windows:
        s = w.statistics
        points.append(
            {
                "window": w.number,
                "starts_at": w.starts_at.isoformat(),
                "label": f"#{w.number} {w.starts_at:%Y-%m-%d %H:%M}",
                "outcome": w.outcome or "pending",
                "n": w.dataset.sample_count,
                **{
                    key: s.get(key)
                    for key in (
                        "mean",
                        "mean_ci_low",
                        "mean_ci_high",
                        "reference_mean",
                        "band_low",
                        "band_high",
                        "ks",
                        "wasserstein_sigma",
                        "psi",
                        "shift_sigma",
                    )
                },
                "mix": {
                    c or "uncategorised": n / max(w.dataset.sample_count, 1) for c, n in w.dataset.categories.items()
                },
            }
        )
    metric = next((w.metric for w in windows if w.metric), "bits_per_byte")
    return {"metric": metric, "metric_label": metric_label(metric), "windows": points}
