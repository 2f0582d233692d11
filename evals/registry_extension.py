"""Evaluation as the registry sees it (`settings.DRIFTBOARD_REGISTRY_EXTENSION`): a new family gets its
kind's default thresholds, submitted weights are queued for scoring, and pull requests are told the
verdict. Each hook hands over to the module that owns the rule."""

from evals import comments, costs, selectors
from evals.services import pipeline
from registry.extensions import RegistryExtension, Report
from registry.models import Artifact, ModelFamily
from registry.registration import Registration


class Evaluation(RegistryExtension):
    def family_create(self, **fields) -> ModelFamily:
        return pipeline.family_create(**fields)

    def artifact_submit(self, **fields) -> Registration:
        return pipeline.artifact_submit(**fields)

    def submission_extras(self, artifact: Artifact) -> dict:
        return {
            "queue_position": selectors.artifact_queue_position(artifact),
            "estimated_cost": costs.artifact_estimated_cost(artifact),
        }

    def report(self, artifact: Artifact, marker: str, page_url: str) -> Report:
        return comments.artifact_report(artifact, marker, page_url)
