"""False confidence: how often a commit's own CI passed weights that Driftboard or its reviewers then found worse.

A version passed CI when every CI check the forge's webhooks recorded for its commit (check suites, workflow
runs, pipelines) passed, and at least one was recorded. It regressed when Driftboard flagged it red, or when
reviewers' pairwise labels prefer its baseline's answer more often than its own. A version not judged yet
counts as passed CI and not regressed.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from driftboard.formatting import percent
from evals.models import Label
from registry.models import Artifact, CommitCheck, ModelFamily


@dataclass(frozen=True)
class RegressedVersion:
    """A version whose CI passed, with why it counts as a regression and the checks that passed it."""

    artifact: Artifact
    red: bool
    labelled_worse: bool
    baseline_preferred: int
    candidate_preferred: int
    checks: tuple[CommitCheck, ...]


@dataclass(frozen=True)
class FalseConfidence:
    """Of a family's versions whose CI passed (`passed_ci`), those that regressed (`versions`, newest first)."""

    checks_recorded: bool
    passed_ci: int
    versions: tuple[RegressedVersion, ...]

    @property
    def regressed(self) -> int:
        return len(self.versions)

    @property
    def rate(self) -> float | None:
        return self.regressed / self.passed_ci if self.passed_ci else None

    @property
    def rate_text(self) -> str:
        return percent(self.rate, signed=False, digits=0)


def ci_passed_artifacts(family: ModelFamily) -> QuerySet[Artifact]:
    """The family's artifacts whose commit has at least one recorded CI check, and only passed ones."""
    checks = CommitCheck.objects.filter(commit_sha=OuterRef("commit_sha"))
    return family.artifacts.filter(Exists(checks), ~Exists(checks.exclude(conclusion=CommitCheck.Conclusion.PASSED)))


def _preferences(value: str) -> Coalesce:
    """How many reviewers' pairwise labels of the artifact prefer `value` ("candidate" or "baseline")."""
    labels = Label.objects.filter(artifact=OuterRef("pk"), kind=Label.Kind.PAIRWISE, value=value)
    count = labels.order_by().values("artifact").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(count, output_field=IntegerField()), Value(0))


def _checks_by_commit(shas: set[str]) -> dict[str, tuple[CommitCheck, ...]]:
    grouped: dict[str, list[CommitCheck]] = defaultdict(list)
    for check in CommitCheck.objects.filter(commit_sha__in=shas).order_by("name", "id"):
        grouped[check.commit_sha].append(check)
    return {sha: tuple(checks) for sha, checks in grouped.items()}


def false_confidence(family: ModelFamily) -> FalseConfidence:
    """The family's false confidence rate: three queries at most, whatever the number of versions."""
    recorded = CommitCheck.objects.filter(commit_sha__in=family.artifacts.values("commit_sha")).exists()
    if not recorded:
        return FalseConfidence(checks_recorded=False, passed_ci=0, versions=())
    passed = list(
        ci_passed_artifacts(family)
        .annotate(baseline_preferred=_preferences("baseline"), candidate_preferred=_preferences("candidate"))
        .order_by("-version")
    )
    red = Artifact.DriftFlag.RED
    regressed = [a for a in passed if a.drift_flag == red or a.baseline_preferred > a.candidate_preferred]
    checks = _checks_by_commit({artifact.commit_sha for artifact in regressed}) if regressed else {}
    versions = tuple(
        RegressedVersion(
            artifact=artifact,
            red=artifact.drift_flag == red,
            labelled_worse=artifact.baseline_preferred > artifact.candidate_preferred,
            baseline_preferred=artifact.baseline_preferred,
            candidate_preferred=artifact.candidate_preferred,
            checks=checks.get(artifact.commit_sha, ()),
        )
        for artifact in regressed
    )
    return FalseConfidence(checks_recorded=True, passed_ci=len(passed), versions=versions)
