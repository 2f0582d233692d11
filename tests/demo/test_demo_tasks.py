"""The demo's tasks and judge: its golden set holds multiple-choice questions and two-turn conversations
that validate; loaded through a real worker, the drifted candidate has an accuracy verdict with its
flips, answers each conversation turn by turn after its own answers, and is judged by a local judge
that the demo reviewer's few labels leave uncalibrated, so its verdict stays at most amber, with the
reason, while the Judges page and its API give κ on those labels."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.test import Client
from sklearn.metrics import cohen_kappa_score
from transformers import PreTrainedTokenizerFast

from evals.models import DriftVerdict, GoldenSample, Label, MetricSnapshot
from evals.scoring import drift, golden_io
from evals.scoring.demo_models import (
    CONVERSATION_TURNS,
    CONVERSATIONS,
    DEMO_CHAT_TEMPLATE,
    QUESTION_CHOICES,
    QUESTIONS,
    DemoBuild,
    add_demo_tasks,
    split_corpus,
)
from evals.scoring.generation import GenerationSettings
from evals.scoring.loading import CAUSAL_LM, load_model
from evals.services import dataset_import
from evals.services.demo import (
    DEMO_BUILD_MARK,
    DEMO_FAMILY,
    DEMO_GENERATION,
    DEMO_LABELS,
    DEMO_REVIEWER,
    demo_label_value,
    demo_load,
)
from registry.models import Artifact
from tests.e2e.conftest import open_page  # noqa: F401  (fixture)
from tests.factories import UserFactory
from tests.generation.test_conversations import answered_alone

MODELS = ("base", "improved", "drifted")


def demo_copy(demo_build: DemoBuild, outdir: Path) -> DemoBuild:
    """The session's test-preset build copied to `outdir` and made the demo's, as `demo_models` makes it."""
    outdir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        shutil.copytree(getattr(demo_build, name), outdir / name)
    shutil.copy(demo_build.golden, outdir / "golden.jsonl")
    copy = DemoBuild(outdir / "base", outdir / "improved", outdir / "drifted", outdir / "golden.jsonl", {})
    return add_demo_tasks(copy)


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_demo_golden_set_gains_questions_and_conversations_that_validate(demo_build, tmp_path, db):
    build = demo_copy(demo_build, tmp_path / "demo")
    rows = rows_of(build.golden)
    passages = rows_of(demo_build.golden)

    assert rows[: len(passages)] == passages  # the held-out passages come first, unchanged
    questions, talks = [r for r in rows if "choices" in r], [r for r in rows if "turns" in r]
    assert len(questions) == QUESTIONS and len(talks) == CONVERSATIONS
    assert len(rows) == len(passages) + QUESTIONS + CONVERSATIONS
    held_out = {" ".join(s.text.split()) for s in split_corpus().golden}
    for question in questions:
        assert len(set(question["choices"])) == QUESTION_CHOICES
        gold = question["choices"][question["answer"]]
        # The gold choice is how a held-out passage really goes on after the context.
        assert any(f"{question['prompt']} {gold}" in text for text in held_out)
        distractors = [choice for choice in question["choices"] if choice != gold]
        assert not any(f"{question['prompt']} {choice}" in text for text in held_out for choice in distractors)
    assert sorted({q["answer"] for q in questions}) == list(range(QUESTION_CHOICES))
    for talk in talks:
        assert len(talk["turns"]) == CONVERSATION_TURNS and all(t["content"] and t["reference"] for t in talk["turns"])
        flat = next(text for text in held_out if text.startswith(talk["turns"][0]["content"]))
        assert " ".join(f"{t['content']} {t['reference']}" for t in talk["turns"]) in flat

    samples = golden_io.read_golden_file(build.golden, prompts=True)
    assert [s["id"] for s in samples] == [r["id"] for r in rows]
    dataset = dataset_import(name="demo-golden", filename="golden.jsonl", source=build.golden)
    assert dataset.sample_count == len(rows)
    stored = GoldenSample.objects.get(dataset=dataset, sample_id=questions[0]["id"])
    assert (stored.choices, stored.answer) == (questions[0]["choices"], [questions[0]["answer"]])
    assert GoldenSample.objects.get(dataset=dataset, sample_id=talks[0]["id"]).turns[1]["reference"]

    for name in MODELS:  # the chat template the turns are asked through; the weights are the session's
        assert PreTrainedTokenizerFast.from_pretrained(getattr(build, name)).chat_template == DEMO_CHAT_TEMPLATE
        assert (getattr(build, name) / "model.safetensors").read_bytes() == (
            getattr(demo_build, name) / "model.safetensors"
        ).read_bytes()


def test_the_demo_reviewer_labels_by_the_answers_similarity_to_the_reference():
    assert demo_label_value(0.40, 0.30) == "candidate"
    assert demo_label_value(0.30, 0.40) == "baseline"
    assert demo_label_value(0.33, 0.30) == "tie"


def stored_values(artifact: Artifact, metric: str) -> np.ndarray:
    positions, numerators, denominators = MetricSnapshot.objects.get(artifact=artifact, metric=metric).arrays()
    return numerators[np.argsort(positions)] / denominators[np.argsort(positions)]


def similarities(artifact: Artifact) -> dict[int, float]:
    positions, numerators, denominators = MetricSnapshot.objects.get(
        artifact=artifact, metric="answer_similarity"
    ).arrays()
    return {int(p): n / d for p, n, d in zip(positions, numerators, denominators, strict=True)}


@pytest.mark.worker
@pytest.mark.browser
def test_the_loaded_demo_shows_flips_conversations_and_an_uncalibrated_judge(
    celery_worker_factory,
    demo_build,
    import_root,
    open_page,  # noqa: F811
):
    build = demo_copy(demo_build, import_root / "demo")
    (import_root / "demo" / "BUILT").write_text(DEMO_BUILD_MARK)
    celery_worker_factory()

    base, improved, drifted = demo_load(import_root / "demo", log=lambda _line: None, timeout=600, preset="test")

    # The demo's verdicts as before: base in production, improved green, drifted red.
    assert (base.status, improved.drift_flag, drifted.drift_flag) == ("promoted", "green", "red")
    assert improved.status == "promoted" and drifted.status == "halted"

    # Accuracy on the questions, with the flips of the stored answers and McNemar's p-value.
    accuracy = drifted.verdicts.get(metric="accuracy")
    reference = drift.mcnemar(stored_values(drifted, "accuracy"), stored_values(accuracy.baseline, "accuracy"))
    flips = accuracy.comparison["flips"]
    assert (flips["right_to_wrong"], flips["wrong_to_right"]) == (reference.right_to_wrong, reference.wrong_to_right)
    assert reference.right_to_wrong + reference.wrong_to_right > 0
    assert flips["p_value"] == pytest.approx(reference.p_value)
    assert (
        accuracy.baseline == improved and MetricSnapshot.objects.get(artifact=drifted, metric="accuracy").n == QUESTIONS
    )

    # Each conversation answered turn by turn, turn 2 after the model's own answer to turn 1.
    reader = UserFactory(username="visitor")
    client = Client()
    client.force_login(reader)
    page = client.get(
        f"/api/v1/artifacts/{drifted.pk}/generations/?metric=answer_similarity&order=position&page_size=200"
    )
    talks = [item for item in page.json()["results"] if item.get("turns")]
    assert len(talks) == CONVERSATIONS
    lm = load_model(build.drifted, kind=CAUSAL_LM, device="cpu")
    settings = GenerationSettings(max_new_tokens=DEMO_GENERATION["max_new_tokens"])
    for talk in talks:
        turns = [{"role": "user", "content": turn["user"]} for turn in talk["turns"]]
        assert [turn["candidate"]["text"] for turn in talk["turns"]] == answered_alone(lm, turns, settings)
        assert all(turn["baseline"]["text"] is not None for turn in talk["turns"])
    review = client.get(f"{drifted.get_absolute_url()}?metric=answer_similarity").content.decode()
    shown = f"{reference.right_to_wrong} right→wrong, {reference.wrong_to_right} wrong→right · McNemar"
    assert shown in review and 'data-part="turns"' in review

    # The local judge: measured on the demo reviewer's labels, too few to calibrate it.
    labels = Label.objects.filter(reviewer__username=DEMO_REVIEWER).select_related("sample")
    assert labels.count() == DEMO_LABELS and set(labels.values_list("artifact", flat=True)) == {improved.pk}
    similarity = {a: similarities(a) for a in (improved, base)}
    for label in labels:  # the stated rule: the answer closer to the reference wins
        expected = demo_label_value(
            similarity[improved][label.sample.position], similarity[base][label.sample.position]
        )
        assert (label.kind, label.value) == ("pairwise", expected)
    judged = drifted.verdicts.get(metric="judge_preference")
    assert judged.outcome in ("green", "amber")
    reason = next(r for r in judged.reasons if r.startswith("judge uncalibrated"))
    assert f"on {DEMO_LABELS} labels" in reason
    judges = client.get(f"/api/v1/families/{DEMO_FAMILY}/judges/").json()["judges"]
    (judge,) = judges
    assert judge["identity"].startswith("local:") and judge["mode"] == "pairwise"
    assert judge["n"] == DEMO_LABELS and not judge["calibrated"]
    assert all(isinstance(judge[k], float) for k in ("kappa", "ci_low", "ci_high", "agreement"))
    assert f"κ {judge['kappa']:.2f} [{judge['ci_low']:.2f}, {judge['ci_high']:.2f}] on {DEMO_LABELS} labels" in reason
    assert sum(map(sum, judge["confusion"])) == DEMO_LABELS
    items = judge["items"]
    assert judge["kappa"] == pytest.approx(cohen_kappa_score([i["human"] for i in items], [i["judge"] for i in items]))
    assert DriftVerdict.objects.filter(artifact=improved, metric="judge_preference").exists()

    # The Judges page in Chromium.
    browser_page, errors = open_page(reader)
    browser_page.goto(f"/families/{DEMO_FAMILY}/judges/")
    shown = browser_page.locator(".judge-kappa").inner_text()
    assert shown.startswith(f"κ {judge['kappa']:.2f} [{judge['ci_low']:.2f}, {judge['ci_high']:.2f}]"), shown
    assert errors == []
