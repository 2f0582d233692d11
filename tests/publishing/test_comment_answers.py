"""The PR comment shows the answers that regressed most on a generation metric, inert whatever the model wrote."""

import hashlib
import html
import re

import numpy as np
import pytest

from evals.comments import comment_render
from evals.models import Generation, GoldenDataset, GoldenSample, MetricSnapshot
from evals.scoring.generation import ENGINE_VERSION
from evals.scoring.hashing import prompt_sha256
from registry.models import Artifact
from registry.publishing import comment_marker
from registry.tasks import publish_artifact
from tests.factories import (
    ArtifactFactory,
    DatasetFactory,
    FamilyFactory,
    PullRequestFactory,
    VerdictFactory,
    float_bytes,
)

CONFIG = hashlib.sha256(b"greedy, 16 new tokens").hexdigest()
TEMPLATE = hashlib.sha256(b"no chat template").hexdigest()
SAMPLES = 8
BASELINE_SIMILARITY = 0.9
# Candidate similarity per position where it differs from the baseline: three clear regressions (worst
# first: 2, 5, 0), a fourth smaller one that the block leaves out, and one improvement.
CANDIDATE_SIMILARITY = {2: 0.1, 5: 0.3, 0: 0.5, 4: 0.85, 6: 0.95}
WORST = [2, 5, 0]
HOSTILE_ANSWER = (
    "| --- |\n| forged | row |\n</details></summary><script>alert(1)</script> <img src=x onerror=alert(1)> "
    "ping @octocat, fixes #1\n```python\nprint('fence')\n```\n`tick` <!-- comment"
)
HOSTILE_PROMPT = "Ignore </summary></details> and **shout** [here](https://evil.example) @octocat"
HOSTILE_REFERENCE = "<b>bold</b> | cell | #1 ~~gone~~"


def prompt_of(position: int) -> str:
    return HOSTILE_PROMPT if position == WORST[0] else f"Question number {position}: what is {position} + 1?"


def reference_of(position: int) -> str:
    return HOSTILE_REFERENCE if position == WORST[0] else f"{position + 1}"


def answer_of(artifact: Artifact, baseline: Artifact, position: int) -> str:
    if artifact == baseline:
        return f"baseline says {position + 1}"
    return HOSTILE_ANSWER if position == WORST[0] else f"candidate rambles about {position}"


def generation_snapshot(artifact: Artifact, dataset, metric: str, values: np.ndarray) -> MetricSnapshot:
    return MetricSnapshot.objects.create(
        artifact=artifact,
        dataset=dataset,
        metric=metric,
        scorer_version="answer-similarity@1",
        commit_sha=artifact.commit_sha,
        value=float(values.mean()),
        n=len(values),
        std=float(values.std()),
        ci_low=float(values.min()),
        ci_high=float(values.max()),
        fingerprint={
            "settings": {"generation": CONFIG, "chat_template": TEMPLATE, "engine": ENGINE_VERSION, "embedder": "e"},
            "weights_sha256": artifact.sha256,
            "scorer_version": "answer-similarity@1",
        },
        positions=np.arange(len(values), dtype=np.int32).tobytes(),
        numerators=float_bytes(values),
        denominators=float_bytes(np.ones(len(values))),
    )


def store_answers(artifact: Artifact, baseline: Artifact) -> None:
    Generation.objects.bulk_create(
        Generation(
            weights_sha256=artifact.sha256,
            prompt_sha256=prompt_sha256(prompt_of(position)),
            config_sha256=CONFIG,
            chat_template_sha256=TEMPLATE,
            engine_version=ENGINE_VERSION,
            text=answer_of(artifact, baseline, position),
            tokens=16,
            finish="length",
        )
        for position in range(SAMPLES)
    )


@pytest.fixture
def answered(db):
    return answered_candidate()


def answered_candidate() -> tuple[Artifact, Artifact, GoldenDataset]:
    """A candidate whose answers got worse than the baseline's on three prompts, one of them hostile."""
    family, dataset = FamilyFactory(slug="support-lm"), DatasetFactory(samples=SAMPLES)
    for position in range(SAMPLES):
        GoldenSample.objects.filter(dataset=dataset, position=position).update(
            text="", prompt=prompt_of(position), reference=reference_of(position)
        )
    baseline = ArtifactFactory(family=family, stage=Artifact.Stage.PRODUCTION)
    candidate = ArtifactFactory(family=family, drift_flag="red", status=Artifact.Status.HALTED)
    base_values = np.full(SAMPLES, BASELINE_SIMILARITY)
    cand_values = base_values.copy()
    for position, value in CANDIDATE_SIMILARITY.items():
        cand_values[position] = value
    generation_snapshot(baseline, dataset, "answer_similarity", base_values)
    generation_snapshot(candidate, dataset, "answer_similarity", cand_values)
    store_answers(baseline, baseline)
    store_answers(candidate, baseline)
    VerdictFactory(
        artifact=candidate,
        baseline=baseline,
        dataset=dataset,
        metric="answer_similarity",
        candidate_value=float(cand_values.mean()),
        baseline_value=BASELINE_SIMILARITY,
        delta=-0.2,
        reasons=["answer similarity 20 % worse than the baseline"],
    )
    return candidate, baseline, dataset


def render(artifact: Artifact) -> str:
    return comment_render(
        artifact=artifact,
        marker=comment_marker(artifact.family),
        page_url=f"https://driftboard.acme.example/artifacts/{artifact.pk}/",
    )


def answers_block(body: str) -> str:
    [block] = re.findall(
        r"<details><summary>The (?:\d+ answers|answer) that regressed most.*?\n</details>", body, re.DOTALL
    )
    return block


def test_it_shows_the_three_most_regressed_answers_worst_first(answered):
    candidate, baseline, dataset = answered

    block = answers_block(render(candidate))

    assert block.startswith(f"<details><summary>The 3 answers that regressed most · {dataset.name} · answer similarity")
    order = [block.index(f"**s{position}**") for position in WORST]
    assert order == sorted(order)
    assert "**s4**" not in block and "**s6**" not in block  # a fourth regression, and an improvement
    assert f"**s{WORST[1]}** · -0.6 · answer similarity 0.9000 → 0.3000" in block
    assert f"- Baseline v{baseline.version}: baseline says {WORST[1] + 1} (16 tokens, length)" in block
    assert f"- Candidate v{candidate.version}: candidate rambles about {WORST[1]} (16 tokens, length)" in block


def test_it_keeps_hostile_prompts_references_and_answers_inert(answered):
    candidate, *_ = answered

    body = render(candidate)
    block = answers_block(body)

    assert body.count("<details>") == body.count("</details>") == 2  # the distributions and the answers
    assert body.count("<summary>") == body.count("</summary>") == 2
    assert "<script" not in body and "<img" not in body and "<b>" not in body and "<!--" not in body[1:]
    assert "```" not in body and "`tick`" not in body and "**shout**" not in body and "](https://evil" not in body
    assert re.search(r"@(?!\u200b)", body) is None
    assert re.search(r"(?<!&)#\d", body) is None  # entities (&#124;) aside, every # is broken
    # Each prompt is one heading line and four list items: no text spills onto a line of its own.
    for line in block.splitlines()[2:-1]:
        assert line == "" or re.match(r"\*\*s\d\*\* · |- (Prompt|Reference|Baseline v\d+|Candidate v\d+): ", line)
    assert all(line.startswith("|") and line.endswith("|") for line in body.splitlines() if "|" in line)


def test_it_keeps_hostile_text_readable(answered):
    candidate, *_ = answered

    readable = html.unescape(answers_block(render(candidate))).replace("\u200b", "")

    assert "| --- | | forged | row | </details></summary><script>alert(1)</script>" in readable
    assert "ping @octocat, fixes #1 ```python print('fence') ``` `tick`" in readable
    assert "Ignore </summary></details> and **shout** [here](https://evil.example) @octocat" in readable
    assert "<b>bold</b> | cell | #1 ~~gone~~" in readable


def test_it_shortens_long_answers_to_a_few_hundred_characters(answered):
    candidate, *_ = answered
    Generation.objects.filter(weights_sha256=candidate.sha256).update(text="word " * 400)

    block = answers_block(render(candidate))

    line = next(line for line in block.splitlines() if line.startswith("- Candidate"))
    assert "word word" in line and "…" in line
    assert 250 < len(line) < 400


def test_it_says_when_an_answer_was_not_stored(answered):
    candidate, baseline, _ = answered
    Generation.objects.filter(weights_sha256=baseline.sha256, prompt_sha256=prompt_sha256(prompt_of(WORST[0]))).delete()

    block = answers_block(render(candidate))

    assert f"- Baseline v{baseline.version}: *no stored answer*" in block


def test_it_shows_one_block_per_dataset_ranked_by_answer_similarity(answered):
    candidate, baseline, dataset = answered
    lengths = np.full(SAMPLES, 10.0)
    longer = lengths.copy()
    longer[7] = 30.0  # answer length is lower-is-better: sample 7 regressed, on no other metric
    generation_snapshot(baseline, dataset, "answer_length", lengths)
    generation_snapshot(candidate, dataset, "answer_length", longer)
    VerdictFactory(artifact=candidate, baseline=baseline, dataset=dataset, metric="answer_length", delta=-0.2)

    body = render(candidate)

    assert "answer similarity</summary>" in answers_block(body)
    assert "**s7**" not in answers_block(body)
    MetricSnapshot.objects.filter(metric="answer_similarity").delete()
    block = answers_block(render(candidate))
    assert block.startswith("<details><summary>The answer that regressed most") and "answer length</summary>" in block
    assert "**s7** · -200.00 %" in block


def test_it_shows_no_answers_for_a_metric_not_computed_from_answers(answered):
    candidate, *_ = answered
    MetricSnapshot.objects.update(fingerprint={"scorer_version": "answer-similarity@1"})

    body = render(candidate)

    assert "answers that regressed most" not in body and "Samples that regressed most" in body


def test_it_leaves_the_answers_out_rather_than_cut_them_when_the_comment_is_full(answered, monkeypatch):
    candidate, *_ = answered
    full = render(candidate)
    monkeypatch.setattr("evals.comments.COMMENT_CHARS_MAX", len(full) - 1)

    body = render(candidate)

    assert "answers that regressed most" not in body
    assert body.count("<details>") == body.count("</details>") == 1
    assert body.endswith(f"(https://driftboard.acme.example/artifacts/{candidate.pk}/)")


def test_the_posted_comment_carries_the_answers(answered, forge):
    candidate, *_ = answered
    Artifact.objects.filter(pk=candidate.pk).update(pull_request=PullRequestFactory(repository="acme/weights"))
    candidate.refresh_from_db()

    result = publish_artifact.apply(args=[candidate.pk], throw=False)

    assert result.successful(), result.traceback
    [comment] = forge.github_comments[("acme/weights", candidate.pull_request.number)]
    assert answers_block(comment["body"]) == answers_block(render(candidate))
