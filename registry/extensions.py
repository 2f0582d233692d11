"""The one way evaluation plugs into the registry.

The registry registers families and weights and talks to pull requests; what a family's creation
adds (its default thresholds), what a submission sets going (scoring) and what a pull request is
told (the commit status and comment) belong to the evaluation app. The registry calls those through
one `RegistryExtension`, whose class the project names in `settings.DRIFTBOARD_REGISTRY_EXTENSION`
(the evaluation app's, by default). The registry imports no app of its own accord, and nothing sets
it at run time: every process reads the same setting.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from registry.models import Artifact, ModelFamily
from registry.registration import Registration


@dataclass(frozen=True)
class Report:
    """What goes back to a pull request for one artifact: a commit status, and a comment once judged."""

    state: str  # GitHub's vocabulary: pending, success, failure, error
    description: str
    comment: str | None


class RegistryExtension(ABC):
    """What the registry asks of the app that evaluates its weights."""

    @abstractmethod
    def family_create(self, **fields) -> ModelFamily:
        """Create a family from the families API's validated fields (registry.services.family_create, and
        whatever a new family needs to be evaluated)."""

    @abstractmethod
    def artifact_submit(self, **fields) -> Registration:
        """Register submitted weights from the artifacts API's fields (registry.services.artifact_register,
        and set their evaluation going)."""

    def submission_extras(self, artifact: Artifact) -> dict:
        """Fields added to the artifacts API's answer to a submission."""
        return {}

    @abstractmethod
    def report(self, artifact: Artifact, marker: str, page_url: str) -> Report:
        """The artifact's commit status and, once it has a verdict, the family's comment (led by `marker`)."""


@cache
def _extension(path: str) -> RegistryExtension:
    extension = import_string(path)()
    if not isinstance(extension, RegistryExtension):
        raise TypeError(f"DRIFTBOARD_REGISTRY_EXTENSION {path!r} is not a registry.extensions.RegistryExtension")
    return extension


def extension() -> RegistryExtension:
    """The project's registry extension, as the setting names it now."""
    return _extension(settings.DRIFTBOARD_REGISTRY_EXTENSION)
