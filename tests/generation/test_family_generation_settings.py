"""A family's `generation` settings: checked by the API, handed to its answer scorers, and the database
store those scorers share across workers."""

from pathlib import Path

import pytest

from evals.models import EvaluationProfile
from evals.models import Generation as GenerationRow
from evals.scoring.generation import ENGINE_VERSION, Generation, GenerationKey, GenerationSettings
from evals.scoring.scorers import SCORERS
from evals.selectors import evaluation_profile
from evals.services.engine import DatabaseGenerationStore, PermanentScoringError, family_scorers
from registry.models import ModelFamily
from tests.factories import FamilyFactory

VALID = {"max_new_tokens": 16, "stop": ["\n"], "chat_template": True, "regex": "^yes", "embedder": "/some/folder"}
ANSWER_SCORERS = ["answer-checks", "answer-similarity", "answer-regex"]


@pytest.fixture(autouse=True)
def _embedder_folders_allowed(settings):
    settings.DRIFTBOARD_MODEL_ROOTS = [Path("/some")]


# (settings, what the message must name)
INVALID = [
    ({"max_tokens": 16}, "max_tokens"),
    ({"max_new_tokens": "x"}, "max_new_tokens"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": True}, "max_new_tokens"),
    ({"stop": "x"}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"chat_template": "yes"}, "chat_template"),
    ({"regex": "("}, "regex"),
    ({"embedder": ""}, "embedder"),
    (["max_new_tokens", 16], "object"),
    ("greedy", "object"),
]


def family_url(slug: str) -> str:
    return f"/api/v1/families/{slug}/"


def test_it_creates_a_family_with_generation_settings_and_gives_them_back(staff_client):
    response = staff_client.post(
        "/api/v1/families/", {"slug": "answers", "kind": "causal-lm", "generation": VALID}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["generation"] == VALID
    assert evaluation_profile(ModelFamily.objects.get(slug="answers")).generation == VALID
    assert staff_client.get(family_url("answers")).json()["generation"] == VALID


def test_it_patches_a_family_s_generation_settings(staff_client):
    family = FamilyFactory(generation={"max_new_tokens": 8})

    response = staff_client.patch(family_url(family.slug), {"generation": VALID}, format="json")

    assert response.status_code == 200, response.json()
    assert EvaluationProfile.objects.get(family=family).generation == VALID
    assert staff_client.get(family_url(family.slug)).json()["generation"] == VALID


@pytest.mark.parametrize(("invalid", "named"), INVALID, ids=[repr(invalid) for invalid, _ in INVALID])
def test_it_refuses_invalid_settings_on_create_and_stores_nothing(staff_client, invalid, named):
    response = staff_client.post(
        "/api/v1/families/", {"slug": "refused", "kind": "causal-lm", "generation": invalid}, format="json"
    )

    assert response.status_code == 400
    [message] = response.json()["generation"]
    assert named in message
    assert not ModelFamily.objects.filter(slug="refused").exists()


@pytest.mark.parametrize(("invalid", "named"), INVALID, ids=[repr(invalid) for invalid, _ in INVALID])
def test_it_refuses_invalid_settings_on_patch_and_keeps_the_old_ones(staff_client, invalid, named):
    family = FamilyFactory(generation={"max_new_tokens": 8})

    response = staff_client.patch(family_url(family.slug), {"generation": invalid}, format="json")

    assert response.status_code == 400
    [message] = response.json()["generation"]
    assert named in message
    assert EvaluationProfile.objects.get(family=family).generation == {"max_new_tokens": 8}


def test_the_family_s_answer_scorers_carry_its_settings_and_the_database_store(db):
    family = FamilyFactory(scorers=["causal-nll", *ANSWER_SCORERS], generation=VALID)

    scorers = family_scorers(family)

    assert [scorer.name for scorer in scorers] == ["causal-nll", *ANSWER_SCORERS]
    assert scorers[0] is SCORERS["causal-nll"]
    for scorer in scorers[1:]:
        assert scorer is not SCORERS[scorer.name]  # a configured copy: the registered one stays unconfigured
        assert scorer.settings.generation == GenerationSettings(max_new_tokens=16, stop=("\n",), chat_template=True)
        assert (scorer.settings.embedder, scorer.settings.regex) == ("/some/folder", "^yes")
        assert isinstance(scorer.settings.store, DatabaseGenerationStore)
    assert SCORERS["answer-checks"].settings.generation == GenerationSettings()


def test_invalid_stored_settings_fail_the_run_for_good(db):
    family = FamilyFactory(scorers=["answer-checks"], generation={"max_new_tokens": 0})

    with pytest.raises(PermanentScoringError, match="generation or judge settings are invalid: max_new_tokens"):
        family_scorers(family)


def test_a_family_without_answer_scorers_is_not_held_to_its_generation_settings(db):
    family = FamilyFactory(scorers=["causal-nll"], generation={"max_new_tokens": 0})

    assert family_scorers(family) == [SCORERS["causal-nll"]]


def key(prompt: str, *, weights: str = "w" * 64, config: str = "c" * 64, engine: int = ENGINE_VERSION) -> GenerationKey:
    return GenerationKey(weights, prompt * 64, config, "t" * 64, engine)


def test_the_database_store_gives_back_what_another_store_put(db):
    answers = {key("a"): Generation("yes", 2, "eos"), key("b"): Generation("no\nreally", 16, "length")}

    DatabaseGenerationStore().put_many(answers)

    assert DatabaseGenerationStore().get_many([key("a"), key("b"), key("z")]) == answers
    assert DatabaseGenerationStore().get_many([]) == {}


def test_the_database_store_matches_the_whole_key(db):
    DatabaseGenerationStore().put_many(
        {key("a"): Generation("A", 1, "eos"), key("b", weights="v" * 64): Generation("B", 1, "eos")}
    )

    # Each field alone matches a stored row; only whole keys count.
    wanted = [key("b"), key("a", weights="v" * 64), key("a", config="d" * 64), key("a", engine=ENGINE_VERSION + 1)]
    assert DatabaseGenerationStore().get_many(wanted) == {}


def test_the_database_store_ignores_answers_it_already_has(db):
    store = DatabaseGenerationStore()
    store.put_many({key("a"): Generation("first", 1, "eos")})

    store.put_many({key("a"): Generation("second", 2, "stop"), key("b"): Generation("new", 3, "eos")})

    assert store.get_many([key("a"), key("b")]) == {
        key("a"): Generation("first", 1, "eos"),
        key("b"): Generation("new", 3, "eos"),
    }
    assert GenerationRow.objects.count() == 2
