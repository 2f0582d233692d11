"""A candidate and its baseline that answered the prompts of one golden set: answer similarity and exact
match per prompt, the verdicts between them, and the answers stored as the engine stores them. Also a
likelihood verdict on a text dataset, which has no answers."""

import hashlib
from dataclasses import dataclass

import numpy as np

from evals.models import DriftVerdict, Generation, GoldenDataset, GoldenSample, MetricSnapshot
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256, sample_sha256
from registry.models import Artifact, ModelFamily
from tests.factories import ArtifactFactory, DatasetFactory, FamilyFactory, SnapshotFactory, VerdictFactory, float_bytes

HOSTILE = "<script>alert(1)</script> <b>bold</b> five"
LONG_BASELINE = " ".join(f"The baseline explains step {i} of the refund policy in plain words." for i in range(8))
LONG_CANDIDATE = LONG_BASELINE.replace("step 6 of", "step six of") + " It adds a closing remark nobody asked for."
FRANCE_BASELINE = "The capital of France is Paris."
FRANCE_CANDIDATE = "The capital of France is Lyon."
SETTINGS = {
    "generation": hashlib.sha256(b"max_new_tokens=64").hexdigest(),
    "chat_template": hashlib.sha256(b"").hexdigest(),
    "engine": 1,
}
BASELINE_SIMILARITY = 0.9
# Candidate answer similarity per position (the baseline's is 0.9 everywhere): 5 is the worst, then 1, 3, 0, 8.
CANDIDATE_SIMILARITY = [0.7, 0.5, 0.95, 0.6, 0.9, 0.4, 0.92, 0.92, 0.85, 0.92, 0.92, 0.92]
WORST = 5
HOSTILE_POSITION = 1
LONG_POSITION = 3
NO_CANDIDATE_ANSWER = 0
NO_BASELINE_ANSWER = 8


@dataclass
class AnswerBoard:
    family: ModelFamily
    dataset: GoldenDataset
    text_dataset: GoldenDataset
    baseline: Artifact
    candidate: Artifact
    samples: list[GoldenSample]

    def review_url(self, metric: str = "answer_similarity") -> str:
        dataset = self.text_dataset if metric == "bits_per_byte" else self.dataset
        return f"{self.candidate.get_absolute_url()}?metric={metric}&dataset={dataset.pk}"


def _sample(dataset: GoldenDataset, position: int) -> GoldenSample:
    fields = {
        "prompt": f"Question {position}: what does the policy say about case {position}?",
        "messages": None,
        "reference": f"The policy covers case {position}.",
    }
    if position == WORST:
        fields |= {"prompt": "Name the capital of France.", "reference": "Paris"}
    if position == HOSTILE_POSITION:
        turns = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 2?"}]
        fields |= {"prompt": "", "messages": turns, "reference": "4"}
    return GoldenSample(
        dataset=dataset,
        position=position,
        sample_id=f"q{position}",
        category="math" if position % 2 else "policy",
        sha256=sample_sha256("", fields["reference"], prompt=fields["prompt"], messages=fields["messages"]),
        **fields,
    )


def _answers(position: int) -> tuple[str | None, str | None]:
    """(baseline's answer, candidate's answer); None where none is stored."""
    answers = {
        WORST: (FRANCE_BASELINE, FRANCE_CANDIDATE),
        HOSTILE_POSITION: ("4", HOSTILE),
        LONG_POSITION: (LONG_BASELINE, LONG_CANDIDATE),
        NO_CANDIDATE_ANSWER: ("The policy covers case 0.", None),
        NO_BASELINE_ANSWER: (None, "The policy covers case eight."),
    }
    same = f"The policy covers case {position}."
    return answers.get(position, (same, same))


def _snapshot(artifact: Artifact, dataset: GoldenDataset, metric: str, values: list[float]) -> MetricSnapshot:
    n = len(values)
    return MetricSnapshot.objects.create(
        artifact=artifact,
        dataset=dataset,
        metric=metric,
        scorer_version="answer-similarity@1" if metric == "answer_similarity" else "answer-checks@1",
        commit_sha=artifact.commit_sha,
        value=float(np.mean(values)),
        n=n,
        std=float(np.std(values)),
        ci_low=float(np.mean(values)) - 0.05,
        ci_high=float(np.mean(values)) + 0.05,
        positions=np.arange(n, dtype=np.int32).tobytes(),
        numerators=float_bytes(values),
        denominators=float_bytes(np.ones(n)),
        fingerprint={"settings": SETTINGS, "weights_sha256": artifact.sha256, "dataset_sha256": dataset.sha256},
    )


def _verdict(candidate: Artifact, baseline: Artifact, dataset: GoldenDataset, metric: str) -> DriftVerdict:
    mine, theirs = (a.snapshots.get(dataset=dataset, metric=metric).value for a in (candidate, baseline))
    return VerdictFactory(
        artifact=candidate,
        baseline=baseline,
        dataset=dataset,
        metric=metric,
        candidate_value=mine,
        baseline_value=theirs,
        delta=(mine - theirs) / abs(theirs),
        ci_low=(mine - theirs) / abs(theirs) - 0.02,
        ci_high=(mine - theirs) / abs(theirs) + 0.02,
    )


def _store_answer(artifact: Artifact, sample: GoldenSample, text: str) -> None:
    asked = messages_of({"prompt": sample.prompt, "messages": sample.messages})
    Generation.objects.create(
        weights_sha256=artifact.sha256,
        prompt_sha256=prompt_sha256(asked),
        config_sha256=SETTINGS["generation"],
        chat_template_sha256=SETTINGS["chat_template"],
        engine_version=SETTINGS["engine"],
        text=text,
        tokens=len(text.split()),
        finish="eos",
    )


def build_answer_board() -> AnswerBoard:
    family = FamilyFactory(slug="qa-gpt")
    dataset = DatasetFactory(name="qa-golden")
    samples = GoldenSample.objects.bulk_create(_sample(dataset, p) for p in range(len(CANDIDATE_SIMILARITY)))
    GoldenDataset.objects.filter(pk=dataset.pk).update(sample_count=len(samples))
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION, status=Artifact.Status.PROMOTED)
    candidate = ArtifactFactory(family=family, parent=baseline, status=Artifact.Status.HELD, drift_flag="red")
    for artifact, values in ((baseline, [BASELINE_SIMILARITY] * len(samples)), (candidate, CANDIDATE_SIMILARITY)):
        _snapshot(artifact, dataset, "answer_similarity", values)
        _snapshot(artifact, dataset, "exact_match", [float(v >= BASELINE_SIMILARITY) for v in values])
    for metric in ("answer_similarity", "exact_match"):
        _verdict(candidate, baseline, dataset, metric)
    for sample in samples:
        for artifact, text in zip((baseline, candidate), _answers(sample.position), strict=True):
            if text is not None:
                _store_answer(artifact, sample, text)
    text_dataset = DatasetFactory(samples=10)
    for artifact, level in ((baseline, 2.0), (candidate, 2.1)):
        SnapshotFactory(artifact=artifact, dataset=text_dataset, n=10, level=level, seed=artifact.pk)
    VerdictFactory(artifact=candidate, baseline=baseline, dataset=text_dataset)
    return AnswerBoard(family, dataset, text_dataset, baseline, candidate, samples)
