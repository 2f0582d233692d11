"""Evaluation plugs into the registry through the one extension the settings name."""

import pytest

from evals.models import Threshold
from registry import services
from registry.extensions import RegistryExtension, Report, extension
from registry.models import ModelFamily
from registry.publishing import comment_marker
from tests.factories import ArtifactFactory

pytestmark = pytest.mark.django_db


def test_the_project_names_the_evaluation_extension():
    from evals.registry_extension import Evaluation

    assert type(extension()) is Evaluation


def test_a_family_created_through_the_api_gets_its_default_thresholds_from_the_extension(staff_client):
    response = staff_client.post("/api/v1/families/", {"slug": "gpt", "kind": "causal-lm"}, format="json")

    assert response.status_code == 201
    assert Threshold.objects.filter(family__slug="gpt", severity=Threshold.Severity.BLOCK).exists()


class RegistryOnly(RegistryExtension):
    """The registry with nothing to evaluate its weights."""

    def family_create(self, **fields):
        return services.family_create(**fields)

    def artifact_submit(self, **fields):
        return services.artifact_register(**fields)

    def report(self, artifact, marker, page_url):
        return Report(state="pending", description="Registered", comment=None)


def test_another_extension_changes_what_the_registry_does(staff_client, settings):
    settings.DRIFTBOARD_REGISTRY_EXTENSION = "tests.registry.test_extension.RegistryOnly"

    response = staff_client.post("/api/v1/families/", {"slug": "bare", "kind": "causal-lm"}, format="json")

    assert response.status_code == 201
    assert ModelFamily.objects.filter(slug="bare").exists()
    assert not Threshold.objects.filter(family__slug="bare").exists()
    artifact = ArtifactFactory(family=ModelFamily.objects.get(slug="bare"))
    report = extension().report(artifact, comment_marker(artifact.family), "http://x/")
    assert (report.state, report.comment) == ("pending", None)


def test_the_evaluation_extension_reports_the_verdict_to_the_pull_request():
    artifact = ArtifactFactory(drift_flag="red")

    report = extension().report(artifact, comment_marker(artifact.family), "http://driftboard/artifacts/1/")

    assert report.state == "failure"
    assert report.comment.startswith(comment_marker(artifact.family))


def test_a_setting_that_names_no_extension_is_refused_by_name(settings):
    settings.DRIFTBOARD_REGISTRY_EXTENSION = "registry.models.ModelFamily"

    with pytest.raises(TypeError, match="DRIFTBOARD_REGISTRY_EXTENSION 'registry.models.ModelFamily'"):
        extension()


def test_an_extension_must_give_every_hook():
    class Partial(RegistryExtension):
        def report(self, artifact, marker, page_url):
            return Report(state="pending", description="", comment=None)

    with pytest.raises(TypeError, match="family_create"):
        Partial()
