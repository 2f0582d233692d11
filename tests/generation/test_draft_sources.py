"""Where a run's drafts come from: the stored answers of the family's production baseline, else of the
artifact's parent, else of its newest other scored artifact; the drafted answers are stored with
where they depart from their draft, and the run records what drafting did."""

import hashlib

import pytest

from evals.models import EvalRun
from evals.models import Generation as GenerationRow
from evals.scoring.generation import ENGINE_VERSION, Generation, GenerationKey
from evals.services.engine import DatabaseGenerationStore, run_drafting
from registry.models import Artifact
from tests.factories import ArtifactFactory, EvalRunFactory, FamilyFactory

pytestmark = pytest.mark.django_db

CONFIG = hashlib.sha256(b"settings").hexdigest()
OTHER_CONFIG = hashlib.sha256(b"other settings").hexdigest()
TEMPLATE = hashlib.sha256(b"").hexdigest()


def key(weights: str, prompt: str, config: str = CONFIG) -> GenerationKey:
    return GenerationKey(weights, hashlib.sha256(prompt.encode()).hexdigest(), config, TEMPLATE, ENGINE_VERSION)


def store(artifact: Artifact, prompt: str, text: str, config: str = CONFIG) -> None:
    DatabaseGenerationStore().put_many({key(artifact.sha256, prompt, config): Generation(text, 3, "eos")})


@pytest.fixture
def family_line():
    family = FamilyFactory()
    production = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, branch=family.base_branch)
    parent = ArtifactFactory(family=family)
    scored = ArtifactFactory(family=family)
    EvalRunFactory(artifact=scored, status=EvalRun.Status.SUCCEEDED)
    candidate = ArtifactFactory(family=family, parent=parent)
    return production, parent, scored, candidate


def test_it_drafts_from_the_baseline_else_the_parent_else_the_newest_scored_artifact(family_line):
    production, parent, scored, candidate = family_line
    store(production, "a", "from the baseline")
    store(production, "b", "baseline, other settings", config=OTHER_CONFIG)
    store(parent, "b", "from the parent")
    store(scored, "c", "from the newest scored")
    drafting = run_drafting(EvalRunFactory(artifact=candidate))
    wanted = [key(candidate.sha256, prompt) for prompt in "abcd"]
    drafts = drafting.lookup(wanted)
    assert {k: (d.text, d.source) for k, d in drafts.items()} == {
        wanted[0]: ("from the baseline", production.sha256),
        wanted[1]: ("baseline, other settings", production.sha256),
        wanted[2]: ("from the newest scored", scored.sha256),
    }
    store(production, "b", "baseline, same settings")
    assert drafting.lookup(wanted[1:2])[wanted[1]].text == "baseline, same settings"


def test_it_drafts_nothing_for_the_first_artifact_of_a_family():
    candidate = ArtifactFactory()
    assert run_drafting(EvalRunFactory(artifact=candidate)).lookup([key(candidate.sha256, "a")]) == {}


def test_it_stores_whose_answer_drafted_an_answer_and_where_it_departs(family_line):
    production, *_, candidate = family_line
    answer = Generation("text", 4, "length", drafted_from=production.sha256, departs_at_token=2)
    DatabaseGenerationStore().put_many({key(candidate.sha256, "a"): answer})
    row = GenerationRow.objects.get(weights_sha256=candidate.sha256)
    assert (row.drafted_from, row.departs_at_token) == (production.sha256, 2)
    assert DatabaseGenerationStore().get_many([key(candidate.sha256, "a")])[key(candidate.sha256, "a")].text == "text"
