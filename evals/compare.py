"""Any two versions compared on their stored per-sample arrays: no re-scoring.

`b` is judged against `a` exactly as a verdict judges a candidate against its baseline (the same
pairing, the same `compare_snapshots` call and so the same paired bootstrap, seed and band), so the
compare page, `GET /api/v1/compare/` and a verdict on the same arrays give the same numbers.
Read only: shared by the compare page and the API.
"""

from dataclasses import dataclass, field

from django.db.models import QuerySet

from evals import selectors
from evals.models import MetricSnapshot
from evals.scoring import drift
from evals.scoring.scorers import METRICS
from evals.services.verdicts import compare_snapshots
from registry.models import Artifact


@dataclass(frozen=True)
class MetricComparison:
    """One metric × dataset both versions scored: the comparison, or why there is none."""

    a: MetricSnapshot
    b: MetricSnapshot
    comparison: drift.Comparison | None
    reason: str = ""

    @property
    def metric(self) -> str:
        return self.a.metric

    @property
    def dataset(self):
        return self.a.dataset


@dataclass
class VersionComparison:
    a: Artifact
    b: Artifact
    metrics: list[MetricComparison] = field(default_factory=list)
    only_one: list[str] = field(default_factory=list)  # "metric on dataset" scored by one version only

    def focus(self, metric: str = "", dataset_id: int | None = None) -> MetricComparison | None:
        """The comparison asked for, else the first one with numbers."""
        numbered = [m for m in self.metrics if m.comparison is not None]
        asked = [m for m in numbered if m.metric == metric and dataset_id in (None, m.dataset.pk)]
        return (asked or numbered or [None])[0]


def _snapshots(artifact: Artifact, dataset_name: str) -> QuerySet[MetricSnapshot]:
    snapshots = artifact.snapshots.select_related("dataset", "artifact__family")
    return snapshots.filter(dataset__name=dataset_name) if dataset_name else snapshots


def versions_compare(*, a: Artifact, b: Artifact, dataset_name: str = "") -> VersionComparison:
    """Every metric × dataset version both artifacts scored (optionally on one dataset), b against a."""
    result = VersionComparison(a=a, b=b)
    of_a = {(s.dataset_id, s.metric): s for s in _snapshots(a, dataset_name)}
    of_b = {(s.dataset_id, s.metric): s for s in _snapshots(b, dataset_name)}
    for key in sorted(of_a.keys() | of_b.keys(), key=lambda k: (str((of_a.get(k) or of_b[k]).dataset), k[1])):
        if key not in of_a or key not in of_b:
            snapshot = of_a.get(key) or of_b[key]
            result.only_one.append(f"{selectors.metric_label(snapshot.metric)} on {snapshot.dataset}")
            continue
        result.metrics.append(metric_compare(a=of_a[key], b=of_b[key]))
    return result


def metric_compare(*, a: MetricSnapshot, b: MetricSnapshot) -> MetricComparison:
    if a.metric not in METRICS:
        return MetricComparison(a, b, None, f"{a.metric} is not a known metric")
    comparable, differing = drift.fingerprints_comparable(b.fingerprint, a.fingerprint, spec=METRICS[a.metric])
    if not comparable:
        return MetricComparison(a, b, None, f"scored differently ({', '.join(differing)}): no number is given")
    thresholds = selectors.thresholds_in_force(family=b.artifact.family, metric=b.metric, dataset_name=b.dataset.name)
    try:
        return MetricComparison(a, b, compare_snapshots(b, a, thresholds))
    except drift.UndefinedRelativeDelta as exc:
        return MetricComparison(a, b, None, str(exc))
