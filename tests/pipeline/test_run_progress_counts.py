"""A run scoring its samples in groups (likelihood on every sample, answers on those with a prompt) counts
samples of the dataset: it never reports more done than its total ("496 / 278")."""

import numpy as np

from evals.scoring.cache import ScoredSamples, ScorerValues
from evals.services import engine

SAMPLES = 278
PROMPTED = 109


def test_it_never_counts_more_samples_than_the_dataset_holds(monkeypatch):
    def score_samples(facts, chosen, store, config, *, scorers, progress):
        for done in range(1, len(chosen) + 1):
            progress(done)
        indices = np.arange(len(chosen))
        results = {name: ScorerValues(None, indices, {}) for name in scorers}
        return ScoredSamples(results, len(chosen), 0, 0, 0, 0.0)

    monkeypatch.setattr(engine, "score_samples", score_samples)
    reported: list[int] = []
    samples = [{"id": str(n)} for n in range(SAMPLES)]
    groups = [
        (np.arange(SAMPLES), ["causal-nll"]),
        (np.arange(PROMPTED), ["answer-checks", "answer-similarity"]),
    ]

    engine._score_groups(None, samples, groups, None, reported.append)

    assert max(reported) == reported[-1] == SAMPLES
    assert reported == sorted(reported)
