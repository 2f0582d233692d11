"""Per-sample results cached before results were stored generically stay valid after the migration:
scoring the same weights again runs no forward pass and gives the same numbers."""

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from evals.scoring.cache import InMemoryResultStore, ScoringConfig, score_samples
from evals.scoring.loading import load_model
from evals.services.engine import DatabaseResultStore

BEFORE = [("evals", "0001_initial")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return executor.loader.project_state(targets).apps if targets else None


@pytest.mark.django_db(transaction=True)
def test_results_cached_in_the_old_columns_are_reused_after_the_migration(demo_build):
    lm = load_model(demo_build.base, kind="causal-lm")
    samples = [{"text": f"def f{i}(x):\n    return x * {i}\n", "reference": ""} for i in range(12)]
    config = ScoringConfig()
    memory = InMemoryResultStore()
    expected = score_samples(lm, samples, memory, config)
    old_apps = migrate(BEFORE)
    try:
        OldResult = old_apps.get_model("evals", "SampleResult")
        OldResult.objects.bulk_create(
            OldResult(
                weights_sha256=key.weights_sha256,
                sample_sha256=key.sample_sha256,
                scorer=f"{key.scorer}@{key.scorer_version}",
                config_key=key.config_key,
                nll=result.values["nll"],
                tokens=int(result.values["tokens"]),
                byte_count=int(result.values["bytes"]),
            )
            for key, result in memory.results.items()
        )
    finally:
        migrate(None)

    again = score_samples(lm, samples, DatabaseResultStore(), config)

    assert again.forward_passes == 0 and again.samples_reused == len(samples)
    for name in ("nll", "tokens", "bytes"):
        np.testing.assert_array_equal(again.values("causal-nll")[name], expected.values("causal-nll")[name])
    assert again.aggregate("bits_per_byte") == pytest.approx(expected.aggregate("bits_per_byte"), rel=1e-12)
