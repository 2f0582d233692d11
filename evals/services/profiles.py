"""Writes of a family's evaluation profile (the settings evals owns)."""

from evals.models import EvaluationProfile
from registry.models import ModelFamily

# The settings a family's evaluation profile holds, as the families API and `family_create` name them.
PROFILE_SETTINGS = (
    "scorers",
    "generation",
    "judge",
    "max_length",
    "sampling",
    "sampling_min_samples",
    "sampling_chunk_size",
    "scorer_options",
    "weekly_budget",
)


def evaluation_profile_update(*, family: ModelFamily, **settings: object) -> EvaluationProfile:
    """Set some of the family's evaluation settings (already validated; see `PROFILE_SETTINGS`),
    creating its profile with the defaults for the rest when it has none."""
    profile, _ = EvaluationProfile.objects.update_or_create(family=family, defaults=settings)
    family.evaluation = profile
    return profile
