"""Writes of a family's evaluation profile (the settings evals owns)."""

from collections.abc import Mapping

from evals.models import EvaluationProfile
from registry.models import ModelFamily


def evaluation_profile_update(*, family: ModelFamily, scorer_options: Mapping[str, Mapping[str, object]]) -> None:
    """Set the family's scorer option values (already validated against the scorers' declarations)."""
    EvaluationProfile.objects.update_or_create(family=family, defaults={"scorer_options": dict(scorer_options)})
