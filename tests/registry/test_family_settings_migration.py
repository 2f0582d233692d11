"""The family's evaluation settings move into its evaluation profile: a migration copies them for every
family (creating the profiles that are missing) before the registry drops the fields."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from evals.models import EvaluationProfile

BEFORE = [("evals", "0013_labels"), ("registry", "0006_family_dataset_pins")]
SETTINGS = {
    "scorers": ["causal-nll", "answer-checks"],
    "generation": {"max_new_tokens": 16},
    "judge": {"url": "http://judge:8000/v1", "model": "qwen"},
    "max_length": 512,
    "sampling": "sequential",
    "sampling_min_samples": 40,
    "sampling_chunk_size": 10,
}


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor.loader.project_state(targets).apps if targets else None


@pytest.mark.django_db(transaction=True)
def test_it_copies_every_family_s_settings_into_its_profile():
    old_apps = migrate(BEFORE)
    try:
        OldFamily = old_apps.get_model("registry", "ModelFamily")
        OldProfile = old_apps.get_model("evals", "EvaluationProfile")
        with_options = OldFamily.objects.create(slug="with-options", kind="causal-lm", **SETTINGS)
        OldProfile.objects.create(family=with_options, scorer_options={"answer-regex": {"pattern": "x"}})
        OldFamily.objects.create(slug="defaults", kind="embedding")
    finally:
        migrate(None)

    copied = EvaluationProfile.objects.get(family__slug="with-options")
    assert {name: getattr(copied, name) for name in SETTINGS} == SETTINGS
    assert copied.scorer_options == {"answer-regex": {"pattern": "x"}}
    created = EvaluationProfile.objects.get(family__slug="defaults")
    assert (created.scorers, created.sampling, created.max_length, created.sampling_min_samples) == (
        [],
        "off",
        None,
        100,
    )
