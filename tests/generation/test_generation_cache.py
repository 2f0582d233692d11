"""Cached generation: identical weights and prompts run zero forward passes; only new prompts, new
settings, another chat template or other weights generate again."""

from dataclasses import replace

import pytest

from evals.scoring.generation import (
    ENGINE_VERSION,
    GenerationSettings,
    InMemoryGenerationStore,
    generate,
    generate_cached,
    generation_keys,
)
from evals.scoring.loading import load_model

SETTINGS = GenerationSettings(max_new_tokens=8)


def test_it_generates_nothing_the_second_time(demo_lm, prompts):
    store = InMemoryGenerationStore()
    first = generate_cached(demo_lm, prompts, store, SETTINGS)
    again = generate_cached(demo_lm, prompts, store, SETTINGS)
    assert (first.generated, first.reused) == (len(prompts), 0) and first.forward_passes > 0
    assert (again.generated, again.reused, again.forward_passes) == (0, len(prompts), 0)
    assert again.texts == first.texts == generate(demo_lm, prompts, SETTINGS).texts
    assert again.tokens.tolist() == first.tokens.tolist()


def test_it_generates_only_for_prompts_added_to_the_set(demo_lm, prompts):
    store = InMemoryGenerationStore()
    generate_cached(demo_lm, prompts[:20], store, SETTINGS)
    grown = [*prompts[:20], "A new prompt", "And another one"]
    result = generate_cached(demo_lm, grown, store, SETTINGS)
    assert (result.generated, result.reused) == (2, 20)
    assert result.texts == generate(demo_lm, grown, SETTINGS).texts


def test_it_generates_a_repeated_prompt_once(demo_lm, prompts):
    result = generate_cached(demo_lm, [prompts[0], prompts[1], prompts[0]], InMemoryGenerationStore(), SETTINGS)
    assert result.generated == 2 and result.texts[0] == result.texts[2]


def test_it_keys_answers_by_settings_chat_template_weights_and_engine(demo_build, demo_lm, chat_lm, prompts):
    store = InMemoryGenerationStore()
    generate_cached(demo_lm, prompts, store, SETTINGS)
    improved = load_model(demo_build.improved, device="cpu")
    for lm, settings in [
        (demo_lm, replace(SETTINGS, max_new_tokens=9)),
        (demo_lm, replace(SETTINGS, stop=("\n",))),
        (chat_lm, SETTINGS),
        (improved, SETTINGS),
    ]:
        assert generate_cached(lm, prompts[:3], store, settings).generated == 3
    key = generation_keys(demo_lm, prompts[:1], SETTINGS)[0]
    assert key.engine_version == ENGINE_VERSION and key.weights_sha256 == demo_lm.weights_sha256
    assert generation_keys(demo_lm, [prompts[0]], replace(SETTINGS, seed=5))[0] == key, "greedy ignores the seed"


def test_it_keeps_finished_chunks_of_an_interrupted_run(demo_lm, prompts):
    store = InMemoryGenerationStore()

    def interrupt(done: int) -> None:
        if done > 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_cached(demo_lm, prompts, store, SETTINGS, chunk_prompts=10, progress=interrupt)
    assert len(store.generations) == 10
    resumed = generate_cached(demo_lm, prompts, store, SETTINGS, chunk_prompts=10)
    assert (resumed.reused, resumed.generated) == (10, len(prompts) - 10)
