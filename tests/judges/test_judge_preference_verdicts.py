"""The pairwise judge through the product: the `judge-preference` scorer compares a candidate's stored
answers with the production baseline's (both orders asked), its verdict bootstraps the per-sample
preferences around 0 (red once the whole interval lies below −0.2), the PR comment shows it with no
baseline value, and on real workers a drifted model is red against the base whose answers the judge
prefers.

The judge is the local OpenAI-compatible server; the stored answers are real Generation rows keyed
by model facts, so the judge runs here load no model."""

import io
import json
import re

import numpy as np
import pytest
from django.utils import timezone

from driftboard.queue_names import Queue
from evals import selectors
from evals.comments import comment_render
from evals.models import DriftVerdict, EvalRun, GoldenSample, MetricSnapshot, Threshold
from evals.scoring.generation import Generation, GenerationSettings, generate, generation_keys, messages_of
from evals.scoring.judges import InMemoryJudgementStore, JudgedItem, JudgeSettings, judge_items
from evals.scoring.loading import ModelFacts, load_model
from evals.scoring.scorers.generated_answers import AnswerOptions
from evals.selectors import evaluation_profile
from evals.services import artifact_evaluate, dataset_import, engine
from evals.services.pipeline import family_create
from evals.services.runs import snapshots_save
from evals.services.thresholds import threshold_backtest, threshold_save
from registry.models import Artifact
from registry.publishing import comment_marker
from tests.factories import ArtifactFactory, DatasetFactory, float_bytes
from tests.judges.conftest import answers_in, ok, trusted
from tests.pipeline.test_worker_pipeline import register, settled

PROMPTS = 30
GENERATION = {"max_new_tokens": 8}
_REFERENCE = re.compile(r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]", re.S)


def prefer_the_reference(body: dict, _number: int):
    """[[A]] or [[B]] for the one answer equal to the reference, [[C]] when neither or both are."""
    answers = answers_in(body)
    reference = _REFERENCE.search(body["messages"][-1]["content"]).group(1)
    matching = [name for name, answer in sorted(answers.items()) if answer == reference]
    return ok(f"Compared with the reference. [[{matching[0] if len(matching) == 1 else 'C'}]]")


def always_first(_body: dict, _number: int):
    return ok("Assistant A is better. [[A]]")


# Stored answers and recorded model facts, as the scoring runs leave them


def facts_of(artifact: Artifact) -> dict:
    return {
        "kind": "causal-lm",
        "device": "cpu",
        "dtype": "float32",
        "max_length": 256,
        "tokenizer_hash": "tokenizer",
        "weights_sha256": artifact.sha256,
        "chat_template_sha256": "no-template",
        "notes": {},
    }


def scored(artifact: Artifact, dataset) -> EvalRun:
    """The artifact's scoring run: it recorded the model facts its answers are keyed by."""
    return EvalRun.objects.create(
        artifact=artifact,
        dataset=dataset,
        status=EvalRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        samples_total=dataset.sample_count,
        judging={"model": facts_of(artifact)},
    )


def store_answers(artifact: Artifact, dataset, answers: dict[int, str]) -> None:
    """Answers of `artifact` by sample position, stored as its scoring run stores them."""
    facts = ModelFacts.from_dict(facts_of(artifact))
    settings = AnswerOptions.from_settings(evaluation_profile(artifact.family).generation).generation
    samples = engine.dataset_samples(dataset)
    keys = generation_keys(facts, [messages_of(sample) for sample in samples], settings)
    engine.DatabaseGenerationStore().put_many(
        {
            key: Generation(text=answers[sample["position"]], tokens=3, finish="stop")
            for key, sample in zip(keys, samples, strict=True)
            if sample["position"] in answers
        }
    )


def judge_run(artifact: Artifact, dataset) -> EvalRun:
    return EvalRun.objects.create(
        artifact=artifact,
        dataset=dataset,
        kind=EvalRun.Kind.JUDGE,
        queue=Queue.JUDGE,
        status=EvalRun.Status.RUNNING,
        samples_total=dataset.sample_count,
        judging={"model": facts_of(artifact), "scoring_run": 0},
    )


def judged(artifact: Artifact, dataset) -> tuple[EvalRun, engine.RunResult]:
    """Run the artifact's judge run here, as a judge worker does, and archive its snapshots."""
    run = judge_run(artifact, dataset)
    result = engine.score_judge_run(run=run, progress=lambda *args, **kwargs: None)
    snapshots_save(run=run, result=result)
    run.refresh_from_db()
    return run, result


@pytest.fixture
def pairwise(db, judge_server):
    """A family judged pairwise, a prompt set with references, and its production baseline whose
    answers equal the references."""
    family = family_create(
        slug="pairwise",
        kind="causal-lm",
        datasets=["prompts"],
        scorers=["judge-preference"],
        generation=GENERATION,
        judge={"url": judge_server.url, "model": "judge-test", "concurrency": 4},
    )
    dataset = DatasetFactory(name="prompts", samples=PROMPTS)
    samples = list(GoldenSample.objects.filter(dataset=dataset))
    for sample in samples:
        sample.prompt, sample.reference = f"What comes after {sample.position}?", f"{sample.position + 1} comes next"
    GoldenSample.objects.bulk_update(samples, ["prompt", "reference"])
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    scored(baseline, dataset)
    store_answers(baseline, dataset, {i: f"{i + 1} comes next" for i in range(PROMPTS)})
    judge_server.replier = prefer_the_reference
    return family, dataset, baseline


def candidate(family, dataset, answers: dict[int, str]) -> Artifact:
    artifact = ArtifactFactory(family=family, status=Artifact.Status.SCORING)
    scored(artifact, dataset)
    store_answers(artifact, dataset, answers)
    return artifact


def drifted_answers(right: int) -> dict[int, str]:
    """The reference for the first `right` prompts, something else for the rest."""
    return {i: f"{i + 1} comes next" if i < right else "I would rather not say" for i in range(PROMPTS)}


# The judge run


def test_it_judges_each_prompt_in_both_orders_against_the_baselines_answer(pairwise, judge_server):
    family, dataset, baseline = pairwise
    artifact = candidate(family, dataset, drifted_answers(right=6))

    run, result = judged(artifact, dataset)

    assert judge_server.calls == 2 * PROMPTS
    positions, numerators, denominators = result.arrays["judge_preference"]
    assert positions.tolist() == list(range(PROMPTS)) and denominators.tolist() == [1.0] * PROMPTS
    assert numerators.tolist() == [0.0] * 6 + [-1.0] * (PROMPTS - 6)  # a tie where both match the reference
    assert run.judging["baseline"] == {"artifact": baseline.pk, "version": baseline.version, "answers": PROMPTS}
    snapshot = MetricSnapshot.objects.get(artifact=artifact, metric="judge_preference")
    assert snapshot.value == pytest.approx(-(PROMPTS - 6) / PROMPTS)
    assert snapshot.fingerprint["settings"]["mode"] == "pairwise"
    assert snapshot.fingerprint["settings"]["baseline"]["weights_sha256"] == baseline.sha256


def test_a_new_baseline_is_a_new_result_and_the_same_one_is_cached(pairwise, judge_server):
    family, dataset, baseline = pairwise
    artifact = candidate(family, dataset, drifted_answers(right=0))
    judged(artifact, dataset)
    assert judge_server.calls == 2 * PROMPTS

    judged(artifact, dataset)
    assert judge_server.calls == 2 * PROMPTS

    Artifact.objects.filter(pk=baseline.pk).update(stage=Artifact.Stage.ARCHIVED)
    newer = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    scored(newer, dataset)
    store_answers(newer, dataset, {i: f"Perhaps {i + 1}" for i in range(PROMPTS)})
    run, result = judged(artifact, dataset)

    assert judge_server.calls == 4 * PROMPTS
    assert result.arrays["judge_preference"][1].tolist() == [0.0] * PROMPTS  # neither matches the reference
    assert run.judging["baseline"]["artifact"] == newer.pk
    snapshot = MetricSnapshot.objects.get(artifact=artifact, metric="judge_preference")
    assert snapshot.fingerprint["settings"]["baseline"]["weights_sha256"] == newer.sha256


def test_only_the_prompts_the_baseline_answered_are_judged(pairwise, judge_server):
    family, dataset, baseline = pairwise
    Artifact.objects.filter(pk=baseline.pk).update(stage=Artifact.Stage.ARCHIVED)
    sampled = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    scored(sampled, dataset)  # a sampled run that stopped early answered every third prompt
    store_answers(sampled, dataset, {i: f"{i + 1} comes next" for i in range(0, PROMPTS, 3)})
    artifact = candidate(family, dataset, drifted_answers(right=0))

    run, result = judged(artifact, dataset)

    positions, numerators, _ = result.arrays["judge_preference"]
    assert positions.tolist() == list(range(0, PROMPTS, 3)) and set(numerators.tolist()) == {-1.0}
    assert judge_server.calls == 2 * len(positions)
    assert run.judging["baseline"] == {"artifact": sampled.pk, "version": sampled.version, "answers": len(positions)}


def test_the_first_artifact_has_no_preference_and_its_run_says_why(pairwise, judge_server):
    family, dataset, baseline = pairwise
    Artifact.objects.filter(pk=baseline.pk).update(stage=Artifact.Stage.STAGING)
    first = candidate(family, dataset, drifted_answers(right=PROMPTS))

    run, result = judged(first, dataset)

    assert result.arrays == {} and judge_server.calls == 0
    assert run.status == EvalRun.Status.SUCCEEDED
    assert run.judging["baseline"] == {"skipped": "No production baseline yet: no answers to compare with."}
    assert not MetricSnapshot.objects.filter(artifact=first).exists()


@pytest.mark.parametrize("recorded", [True, False])
def test_a_baseline_without_stored_answers_leaves_the_metric_out(pairwise, judge_server, recorded):
    family, dataset, baseline = pairwise
    if recorded:  # its answers were generated by another tokenizer: they are keyed otherwise
        EvalRun.objects.filter(artifact=baseline).update(
            judging={"model": {**facts_of(baseline), "tokenizer_hash": "another"}}
        )
    else:
        EvalRun.objects.filter(artifact=baseline).delete()
    artifact = candidate(family, dataset, drifted_answers(right=0))

    run, result = judged(artifact, dataset)

    assert result.arrays == {} and judge_server.calls == 0
    skipped = run.judging["baseline"]["skipped"]
    assert f"The baseline v{baseline.version} has no stored answer" in skipped
    assert ("to these prompts" in skipped) is recorded
    artifact_evaluate(artifact=artifact)
    assert not artifact.verdicts.exists()


# The verdict on stored snapshots


def preference_snapshot(artifact: Artifact, dataset, values, against: Artifact) -> MetricSnapshot:
    """A judge_preference snapshot from per-sample preferences (NaN: a judge error), as its judge run
    against `against` stored it."""
    values = np.asarray(values, dtype=np.float64)
    judged_samples = ~np.isnan(values)
    run = EvalRun.objects.create(
        artifact=artifact,
        dataset=dataset,
        kind=EvalRun.Kind.JUDGE,
        queue=Queue.JUDGE,
        status=EvalRun.Status.SUCCEEDED,
        judging={"baseline": {"artifact": against.pk, "version": against.version, "answers": len(values)}},
    )
    mean = float(np.nanmean(values)) if judged_samples.any() else 0.0
    return MetricSnapshot.objects.create(
        artifact=artifact,
        dataset=dataset,
        run=run,
        metric="judge_preference",
        scorer_version="judge-preference@1",
        commit_sha=artifact.commit_sha,
        value=mean,
        n=len(values),
        std=0.5,
        ci_low=mean,
        ci_high=mean,
        positions=np.arange(len(values), dtype=np.int32).tobytes(),
        numerators=float_bytes(np.where(judged_samples, values, 0.0)),
        denominators=float_bytes(judged_samples.astype(np.float64)),
        fingerprint={"settings": {"mode": "pairwise", "baseline": {"weights_sha256": against.sha256}}},
    )


@pytest.fixture
def stored(db):
    family = family_create(slug="judged-pairwise", kind="causal-lm", datasets=["prompts"], scorers=["judge-preference"])
    trusted(family, mode="pairwise", template=None)  # the stored fingerprints name no judge
    dataset = DatasetFactory(name="prompts", samples=PROMPTS * 2)
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    return family, dataset, baseline


def evaluated(stored, values, branch: str = "finetune") -> tuple[Artifact, DriftVerdict]:
    family, dataset, baseline = stored
    artifact = ArtifactFactory(family=family, branch=branch, status=Artifact.Status.SCORING)
    preference_snapshot(artifact, dataset, values, baseline)
    artifact_evaluate(artifact=artifact)
    artifact.refresh_from_db()
    return artifact, artifact.verdicts.get(metric="judge_preference")


def test_a_family_naming_the_pairwise_judge_is_gated_on_it_by_default(stored):
    family, *_ = stored

    threshold = Threshold.objects.get(family=family, metric="judge_preference")

    assert (threshold.rule, threshold.limit, threshold.severity) == ("relative", 0.2, "block")
    assert threshold.rationale and threshold.history.exists()
    assert not Threshold.objects.filter(family=family_create(slug="plain", kind="causal-lm"), metric="judge_preference")


def test_a_position_biased_judge_prefers_nothing_and_is_not_red(stored, judge_server):
    judge_server.replier = always_first
    items = [JudgedItem(question=f"q{i}", answer=f"candidate {i}", baseline_answer=f"base {i}") for i in range(40)]
    result = judge_items(judge_server.judge(), items, InMemoryJudgementStore(), JudgeSettings(mode="pairwise"))
    assert judge_server.calls == 80 and result.order_disagreement == 1.0

    artifact, verdict = evaluated(stored, result.values)

    assert verdict.outcome == "green" and artifact.drift_flag == "green"
    assert (verdict.delta, verdict.ci_low, verdict.ci_high) == (0.0, 0.0, 0.0)
    assert verdict.baseline_value is None and verdict.baseline == stored[2]
    assert verdict.threshold.metric == "judge_preference"  # gated: the limit judged it


def test_a_clearly_negative_preference_is_red_and_halts(stored):
    values = [-1.0] * 40 + [0.0] * 15 + [1.0] * 5

    artifact, verdict = evaluated(stored, values)

    assert (verdict.outcome, artifact.status, artifact.drift_flag) == ("red", "halted", "red")
    assert verdict.delta == pytest.approx(-35 / 60) and verdict.candidate_value == pytest.approx(-35 / 60)
    assert verdict.ci_low <= verdict.delta <= verdict.ci_high < -0.2
    assert verdict.p_value < 1e-6
    assert verdict.comparison["band"] is None and verdict.band_low is None
    assert set(verdict.per_category) == {"prose", "code"}


def test_a_draft_limit_is_backtested_on_the_stored_preference(stored):
    family, *_ = stored
    _, verdict = evaluated(stored, [-1.0] * 40 + [0.0] * 20)
    draft = Threshold(family=family, metric="judge_preference", rule=Threshold.Rule.RELATIVE, limit=0.9)

    backtest = threshold_backtest(threshold=draft)

    assert backtest["counts"] == {"green": 1, "amber": 0, "red": 0}
    assert backtest["artifacts"][0]["recorded"] == verdict.outcome == "red"


def test_a_drop_beyond_the_limit_with_a_straddling_interval_is_amber(stored):
    values = [-1.0] * 10 + [0.0] * 5 + [1.0] * 5

    _, verdict = evaluated(stored, values)

    assert verdict.outcome == "amber"
    assert verdict.delta == pytest.approx(-0.25) and verdict.ci_low < -0.2 < verdict.ci_high


def test_judge_errors_are_left_out_and_counted_in_the_reasons(stored):
    values = [-1.0] * 45 + [float("nan")] * 5 + [0.0] * 10

    _, verdict = evaluated(stored, values)

    assert verdict.delta == pytest.approx(-45 / 55)
    assert (verdict.samples_used, verdict.samples_total) == (55, PROMPTS * 2)
    assert any(
        "55 samples judged against v" in reason and "5 judge errors left out" in reason for reason in verdict.reasons
    )


def test_every_judgement_failed_is_incomparable_not_a_crash(stored):
    _, verdict = evaluated(stored, [float("nan")] * 10)

    assert verdict.outcome == "incomparable" and verdict.delta is None
    assert "10 judge errors" in verdict.reasons[0]


def test_a_preference_judged_against_another_baseline_is_not_compared(stored):
    family, dataset, baseline = stored
    artifact = ArtifactFactory(family=family, branch="finetune", status=Artifact.Status.SCORING)
    older = ArtifactFactory(family=family, stage=Artifact.Stage.ARCHIVED)
    preference_snapshot(artifact, dataset, [-1.0] * 20, older)

    artifact_evaluate(artifact=artifact)

    verdict = artifact.verdicts.get()
    assert verdict.outcome == "incomparable" and verdict.delta is None
    assert f"judged against v{older.version}, not against the baseline v{baseline.version}" in verdict.reasons[0]


def test_a_band_threshold_on_the_preference_is_skipped_with_its_reason(stored):
    family, *_ = stored
    threshold_save(
        threshold=Threshold(
            family=family,
            metric="judge_preference",
            rule=Threshold.Rule.BAND,
            limit=3.0,
            severity=Threshold.Severity.WARN,
            rationale="Leaving the band of past preferences is worth a look.",
        ),
        user=None,
        reason="test",
    )

    _, verdict = evaluated(stored, [0.0] * 30 + [1.0] * 10)

    assert verdict.outcome == "green" and verdict.threshold.rule == "relative"
    assert any("no band for judge preference" in reason for reason in verdict.reasons)


def test_the_pr_comment_shows_the_preference_without_a_baseline_value(stored):
    family, dataset, baseline = stored
    older = ArtifactFactory(family=family, stage=Artifact.Stage.ARCHIVED)
    # The baseline's own preference, against its own baseline: not shown beside the candidate's.
    preference_snapshot(baseline, dataset, [1.0] * 20, older)
    artifact, verdict = evaluated(stored, [-1.0] * 40 + [float("nan")] * 2 + [0.0] * 18)

    body = comment_render(
        artifact=artifact,
        marker=comment_marker(family),
        page_url=f"https://driftboard.example/artifacts/{artifact.pk}/",
    )

    [row] = [line for line in body.splitlines() if line.startswith("| prompts | judge preference |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:4] == [f"{verdict.candidate_value:.4f}", "—"]
    assert cells[4] == "-68.97 %" and cells[6] == "20 % worse → red" and cells[7] == "🔴 red"
    assert "2 judge errors left out" in body
    distribution = [line for line in body.splitlines() if "prompts · judge preference ·" in line]
    assert len(distribution) == 1 and f"v{artifact.version} against v{baseline.version}" in distribution[0]
    assert "| 58 |" in distribution[0]
    assert "Samples that regressed most" not in body


# On real workers


@pytest.mark.worker
def test_a_drifted_model_is_red_on_the_judges_preference_for_the_bases_answers(
    celery_worker_factory, api_client, transactional_db, demo_build, demo_imports, judge_server
):
    rows = [json.loads(line) for line in demo_build.golden.read_text().splitlines()]
    prompted = [row for row in rows if row.get("prompt")][:12]
    base = load_model(demo_build.base, kind="causal-lm")
    references = generate(base, [row["prompt"] for row in prompted], GenerationSettings(**GENERATION)).texts
    lines = [
        json.dumps({"id": row["id"], "prompt": row["prompt"], "reference": answer})
        for row, answer in zip(prompted, references, strict=True)
        if answer.strip()
    ]
    dataset_import(name="pairwise-golden", filename="pairwise.jsonl", source=io.BytesIO("\n".join(lines).encode()))
    judge_server.replier = prefer_the_reference
    family = family_create(
        slug="pairwise-judged",
        kind="causal-lm",
        base_path=str(demo_build.base),
        datasets=["pairwise-golden"],
        scorers=["judge-preference"],
        generation=GENERATION,
        judge={"url": judge_server.url, "model": "judge-test", "concurrency": 4},
    )
    trusted(family, mode="pairwise", identity=f"openai:{judge_server.url}|judge-test")
    celery_worker_factory(queues=(Queue.SCORING, Queue.JUDGE, Queue.PUBLISH))

    first = settled(register(api_client, family, demo_imports["base"], "a" * 40))
    assert (first.status, first.stage) == ("promoted", "production")
    first_judging = first.runs.get(kind="judge")
    assert (
        first_judging.status == "succeeded" and "No production baseline" in first_judging.judging["baseline"]["skipped"]
    )
    assert judge_server.calls == 0

    drifted = settled(register(api_client, family, demo_imports["drifted"], "b" * 40, branch="finetune"))
    verdict = drifted.verdicts.get(metric="judge_preference")
    assert (verdict.outcome, drifted.status) == ("red", "halted"), verdict.reasons
    assert verdict.baseline_id == first.pk and verdict.ci_high < -0.2 and verdict.baseline_value is None
    assert judge_server.calls == 2 * len(lines)
    assert drifted.runs.get(kind="judge").judging["baseline"] == {
        "artifact": first.pk,
        "version": first.version,
        "answers": len(lines),
    }


def test_the_review_page_pairs_no_baseline_snapshot_with_a_preference(stored, client, django_user_model):
    family, dataset, baseline = stored
    preference_snapshot(baseline, dataset, [0.0] * 10, baseline)  # the baseline's own, against its own baseline
    artifact, verdict = evaluated(stored, [-1.0] * 40 + [1.0] * 20)
    assert selectors.verdict_samples_paired(verdict) is None
    assert selectors.verdict_answers_regressed_most(verdict, 3) is None
    client.force_login(django_user_model.objects.create_user("reader"))
    response = client.get(f"{artifact.get_absolute_url()}?metric=judge_preference&dataset={dataset.pk}")
    assert response.status_code == 200
    assert response.context["regressions"] == [] and response.context["distribution_charts"] == []
