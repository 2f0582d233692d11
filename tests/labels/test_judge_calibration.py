"""An uncalibrated judge cannot halt: a judge configuration with too few labels, or whose κ's lower
bound is under the family's floor, is capped at amber with the reason (κ, interval, n); agreeing labels
or a staff trust make it count; a new rubric starts over. The judges endpoint gives numbers anyone can
recompute from its items."""

import io
import json

import pytest
from sklearn.metrics import cohen_kappa_score

from driftboard.queue_names import Queue
from evals import label_selectors
from evals.models import GoldenSample, MetricSnapshot
from evals.scoring.errors import ScoringError
from evals.scoring.generation import GenerationSettings, generate
from evals.scoring.loading import load_model
from evals.scoring.scorers.judge_score import judge_options
from evals.services import artifact_evaluate, dataset_import
from evals.services.labels import judge_trust
from evals.services.pipeline import family_create
from tests.conftest import wait_for
from tests.factories import UserFactory
from tests.judges.conftest import trusted
from tests.judges.test_judge_preference_verdicts import GENERATION, prefer_the_reference
from tests.labels.conftest import client_of, reviewer_named
from tests.pipeline.test_worker_pipeline import register, settled

PROMPTS = 30


def label_all(client, artifact, values: dict[int, str]) -> None:
    for position, value in values.items():
        body = {"artifact": artifact.pk, "sample": f"s{position}", "kind": "pairwise", "value": value}
        assert client.post("/api/v1/labels/", body, format="json").status_code == 201


def agreeing(flip: int = 0) -> dict[int, str]:
    """The judge's own verdicts (a tie on the first 6, the baseline after), `flip` of them turned around."""
    values = {i: "tie" if i < 6 else "baseline" for i in range(PROMPTS)}
    for i in range(6, 6 + flip):
        values[i] = "candidate"
    return values


def verdict_of(artifact):
    artifact_evaluate(artifact=artifact)
    artifact.refresh_from_db()
    return artifact.verdicts.get(metric="judge_preference")


def test_a_judge_without_labels_is_capped_at_amber_with_its_reason(judged_candidate):
    *_, artifact = judged_candidate

    verdict = verdict_of(artifact)

    assert (verdict.outcome, artifact.drift_flag, artifact.status) == ("amber", "amber", "held")
    assert verdict.ci_high < -0.2 and verdict.delta == pytest.approx(-0.8)  # the statistics are kept
    assert any(reason.startswith("judge uncalibrated: no labels yet") for reason in verdict.reasons)


def test_enough_agreeing_labels_let_the_judge_turn_it_red(judged_candidate):
    *_, artifact = judged_candidate
    label_all(client_of(reviewer_named("ann")), artifact, agreeing())

    verdict = verdict_of(artifact)

    assert (verdict.outcome, artifact.status) == ("red", "halted"), verdict.reasons
    assert not any("uncalibrated" in reason for reason in verdict.reasons)


def test_too_few_labels_keep_it_amber_whatever_they_say(judged_candidate):
    *_, artifact = judged_candidate
    label_all(client_of(reviewer_named("ann")), artifact, dict(list(agreeing().items())[:29]))

    verdict = verdict_of(artifact)

    assert verdict.outcome == "amber"
    assert any("judge uncalibrated: κ 1.00 [1.00, 1.00] on 29 labels" in reason for reason in verdict.reasons)


def test_a_judge_people_disagree_with_stays_amber_and_the_endpoint_shows_why(judged_candidate):
    family, _, _, artifact = judged_candidate
    ann = client_of(reviewer_named("ann"))
    label_all(ann, artifact, agreeing(flip=14))

    verdict = verdict_of(artifact)
    judges = ann.get(f"/api/v1/families/{family.slug}/judges/").json()["judges"]

    assert verdict.outcome == "amber"
    (judge,) = judges
    assert judge["mode"] == "pairwise" and judge["identity"].startswith("openai:") and judge["n"] == PROMPTS
    humans, verdicts = [i["human"] for i in judge["items"]], [i["judge"] for i in judge["items"]]
    assert judge["kappa"] == pytest.approx(cohen_kappa_score(humans, verdicts))
    assert judge["agreement"] == pytest.approx(16 / 30)
    assert judge["ci_low"] < 0.4 and not judge["calibrated"]
    assert judge["confusion"] == [[0, 14, 0], [0, 10, 0], [0, 0, 6]]  # rows: people, columns: the judge
    reason = next(r for r in verdict.reasons if r.startswith("judge uncalibrated"))
    assert f"κ {judge['kappa']:.2f} [{judge['ci_low']:.2f}, {judge['ci_high']:.2f}] on 30 labels" in reason


def test_a_staff_trust_lets_an_unlabelled_judge_count(judged_candidate, judge_server):
    family, _, _, artifact = judged_candidate
    trusted(family, mode="pairwise", identity=f"openai:{judge_server.url}|judge-test")

    assert verdict_of(artifact).outcome == "red"
    assert (
        client_of(UserFactory(username="r"))
        .get(f"/api/v1/families/{family.slug}/judges/")
        .json()["judges"][0]["trusted"]
    )


def test_a_trust_needs_a_reason():
    with pytest.raises(ValueError, match="Say why"):
        judge_trust(family=None, configuration=None, actor=None, reason="  ")


def test_a_new_rubric_is_a_new_configuration_that_starts_uncalibrated(judged_candidate, judge_server):
    family, _, _, artifact = judged_candidate
    trusted(family, mode="pairwise", identity=f"openai:{judge_server.url}|judge-test")
    snapshot = MetricSnapshot.objects.get(artifact=artifact, metric="judge_preference")
    snapshot.fingerprint["settings"]["rubric"] = "Prefer the shorter answer."
    snapshot.save()

    agreement = label_selectors.snapshot_judge_agreement(snapshot)

    assert agreement.configuration.rubric == "Prefer the shorter answer." and agreement.trusted is None
    assert verdict_of(artifact).outcome == "amber"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"min_kappa": 1.5}, "min_kappa"),
        ({"min_labels": 0}, "min_labels"),
        ({"pass_rating": 11}, "pass_rating"),
        ({"pass_rating": True}, "pass_rating"),
        ({"min_labels": "30"}, "min_labels"),
    ],
)
def test_the_calibration_settings_are_checked_like_the_others(given, message):
    with pytest.raises(ScoringError, match=message):
        judge_options(given, resolve=False)
    judge_options({"min_kappa": 0.6, "min_labels": 50, "pass_rating": 8}, resolve=False)


def judge_verdicts(artifact) -> dict[str, str]:
    """The judge's combined verdict on each of the artifact's items (its judge_preference per sample), by
    golden sample id, in the labels' vocabulary."""
    snapshot = MetricSnapshot.objects.get(artifact=artifact, metric="judge_preference")
    positions, numerators, denominators = snapshot.arrays()
    ids = dict(GoldenSample.objects.filter(dataset=snapshot.dataset).values_list("position", "sample_id"))
    return {
        ids[int(position)]: "candidate" if value > 0 else "baseline" if value < 0 else "tie"
        for position, value, judged in zip(positions, numerators, denominators, strict=True)
        if judged
    }


# Prompts whose reference no model says: the judge finds neither answer right and calls them a tie.
UNANSWERABLE = 3


@pytest.mark.worker
def test_on_real_workers_an_unlabelled_judge_holds_a_drifted_model_at_amber_and_agreeing_labels_turn_it_red(
    celery_worker_factory, api_client, transactional_db, demo_build, demo_imports, judge_server
):
    rows = [json.loads(line) for line in demo_build.golden.read_text().splitlines()]
    prompted = [row for row in rows if row.get("prompt")][: 12 + UNANSWERABLE]
    base = load_model(demo_build.base, kind="causal-lm")
    references = generate(base, [row["prompt"] for row in prompted], GenerationSettings(**GENERATION)).texts
    references[-UNANSWERABLE:] = ["(no model says this)"] * UNANSWERABLE
    lines = [
        json.dumps({"id": row["id"], "prompt": row["prompt"], "reference": answer})
        for row, answer in zip(prompted, references, strict=True)
        if answer.strip()
    ]
    dataset_import(name="labelled-golden", filename="labelled.jsonl", source=io.BytesIO("\n".join(lines).encode()))
    judge_server.replier = prefer_the_reference
    family = family_create(
        slug="labelled",
        kind="causal-lm",
        base_path=str(demo_build.base),
        datasets=["labelled-golden"],
        scorers=["judge-preference"],
        generation=GENERATION,
        judge={"url": judge_server.url, "model": "judge-test", "concurrency": 4, "min_labels": 5},
    )
    celery_worker_factory(queues=(Queue.SCORING, Queue.JUDGE, Queue.PUBLISH))
    settled(register(api_client, family, demo_imports["base"], "a" * 40))

    drifted = settled(register(api_client, family, demo_imports["drifted"], "b" * 40, branch="finetune"))
    verdict = drifted.verdicts.get(metric="judge_preference")
    assert (verdict.outcome, drifted.status) == ("amber", "held"), verdict.reasons
    assert verdict.ci_high < -0.2 and any("judge uncalibrated: no labels yet" in r for r in verdict.reasons)

    # A reviewer labels every item as the judge saw it, through the API; each label refreshes the
    # artifact on the publish queue, and once the judge is calibrated its verdict is red.
    verdicts = judge_verdicts(drifted)
    assert len(verdicts) >= 5 and set(verdicts.values()) >= {"baseline", "tie"}
    reviewer = client_of(reviewer_named("ann"))
    for sample, value in verdicts.items():
        body = {"artifact": drifted.pk, "sample": sample, "kind": "pairwise", "value": value}
        assert reviewer.post("/api/v1/labels/", body, format="json").status_code == 201

    def halted():
        drifted.refresh_from_db()
        return drifted.status == "halted"

    wait_for(halted, timeout=120, message="the labels to turn the drifted model red")
    verdict = drifted.verdicts.get(metric="judge_preference")
    assert (verdict.outcome, drifted.drift_flag) == ("red", "red"), verdict.reasons
    assert not any("uncalibrated" in reason for reason in verdict.reasons)
    (judge,) = reviewer.get(f"/api/v1/families/{family.slug}/judges/").json()["judges"]
    assert judge["calibrated"] and judge["n"] == len(verdicts) and judge["agreement"] == 1.0
