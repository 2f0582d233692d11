"""Answers side by side: the candidate's and its baseline's per prompt, in an order, and which to list."""

from dataclasses import dataclass

from evals.models import DriftVerdict, GoldenSample, Judgement, MetricSnapshot
from evals.scoring.generation import messages_of
from evals.scoring.hashing import prompt_sha256
from evals.scoring.judges.judging import JudgementKey, items_from_samples, judgement_keys
from evals.scoring.judges.templates import TEMPLATE_VERSION
from evals.scoring.scorers import METRICS
from evals.selectors.generations import (
    Answer,
    TurnComparison,
    _answers_of,
    conversation_turns,
    departure,
    generation_metric,
    snapshot_weights,
)
from evals.selectors.judges import JudgeFacts, JudgeReply, judge_facts_of
from evals.selectors.metrics import change_text
from evals.selectors.samples import (
    _one_sample,
    _ranked,
    asked_text,
    samples_paired,
    samples_regressed_most,
    snapshot_per_sample_values,
)
from registry.models import Artifact


@dataclass(frozen=True)
class AnswerComparison:
    """One prompt with its reference and the candidate's and baseline's answers, and the metric's
    per-sample values on it (None where a side has none)."""

    position: int
    sample_id: str
    category: str
    prompt: str
    messages: list | None
    reference: str
    candidate: Answer | None
    baseline: Answer | None
    candidate_value: float | None
    baseline_value: float | None
    # The metric's own change (`MetricSpec.change`), negative means worse.
    change: float | None
    metric: str = ""
    # A judge metric: each side's stored judge replies about its answer, in repeat order (None where the
    # side was not judged with findable settings; the baseline's only when the same judge judged it).
    candidate_judged: tuple[JudgeReply, ...] | None = None
    baseline_judged: tuple[JudgeReply, ...] | None = None
    # The first token of the candidate's answer that differs from the baseline's, known when the
    # candidate's answer was drafted from the baseline's (None when they are equal or it is unknown).
    departs_at_token: int | None = None
    # A conversation: every user turn with both sides' answers (empty for a single prompt).
    turns: tuple["TurnComparison", ...] = ()

    @property
    def unchanged(self) -> bool | None:
        """Whether the candidate answered exactly as the baseline (None unless both answers are stored)."""
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate.text == self.baseline.text

    @property
    def asked(self) -> str:
        return asked_text(self.prompt, self.messages)

    @property
    def change_text(self) -> str:
        return change_text(self.metric, self.change)

    @property
    def relative_change(self) -> float | None:
        """The change when the metric measures it relative to the baseline, else None (API field)."""
        spec = METRICS.get(self.metric)
        return self.change if spec is not None and not spec.absolute else None


def answer_order(candidate: MetricSnapshot, baseline: MetricSnapshot | None, order: str) -> list[int]:
    """Dataset positions of the candidate's samples: `regressed` puts the most regressed first by the
    metric's own change, `absolute` by the change in the metric's units (as `samples_regressed_most`
    ranks them; unpaired samples last), `position` keeps dataset order."""
    positions = candidate.arrays()[0]
    if order == "position" or baseline is None:
        return sorted(int(p) for p in positions)
    pairs = samples_paired(candidate, baseline)
    ranked = [int(pairs.positions[i]) for i in _ranked(pairs, order)]
    paired = set(ranked)
    return ranked + sorted(int(p) for p in positions if int(p) not in paired)


def _said(
    answers: dict[int, Answer], conversations: dict[int, tuple[TurnComparison, ...]], side: str
) -> dict[int, str | list[str]]:
    """What one side answered by position: a prompt's answer text, a conversation's answers to every
    turn (only when each turn's answer is stored, as the judge then read them)."""
    said: dict[int, str | list[str]] = {position: answer.text for position, answer in answers.items()}
    for position, turns in conversations.items():
        answered = [getattr(turn, side) for turn in turns]
        if answered and all(answer is not None for answer in answered):
            said[position] = [answer.text for answer in answered]
    return said


def _judge_replies(
    sides: list[tuple[JudgeFacts | None, dict[int, str | list[str]]]], samples: dict[int, GoldenSample]
) -> list[dict[int, tuple[JudgeReply, ...]] | None]:
    """For each side (its judge facts, what it answered by position): every answer's stored judge
    replies, found again by their judgement keys (one query for all sides); None for a side without
    judge facts. A conversation's replies are about its whole conversation."""
    wanted: list[tuple[int, int, JudgementKey]] = []
    for index, (facts, answers) in enumerate(sides):
        if facts is None:
            continue
        identity, settings = facts
        for position, answer in answers.items():
            sample = samples[position]
            asked = {
                "prompt": sample.prompt,
                "messages": sample.messages,
                "reference": sample.reference,
                "turns": sample.turns,
            }
            item = items_from_samples([asked], [answer])[0]
            wanted.extend((index, position, key) for key in judgement_keys(identity, item, settings))
    found = {}
    if wanted:
        rows = Judgement.objects.filter(
            judge__in={key.judge for _, _, key in wanted},
            template_version=TEMPLATE_VERSION,
            request_sha256__in={key.request_sha256 for _, _, key in wanted},
        ).values_list(*JudgementKey._fields, "reply", "value", "error")
        found = {JudgementKey(*fields): (reply, value, error) for *fields, reply, value, error in rows}
    replies: list[dict[int, list[JudgeReply]] | None] = [
        None if facts is None else {position: [] for position in answers} for facts, answers in sides
    ]
    for index, position, key in wanted:
        if key in found:
            replies[index][position].append(JudgeReply(key.repeat, *found[key]))
    return [None if side is None else {p: tuple(r) for p, r in side.items()} for side in replies]


def answers_compared(
    candidate: MetricSnapshot, baseline: MetricSnapshot | None, positions: list[int]
) -> list[AnswerComparison]:
    """The prompts at `positions` (in that order) side by side: reference, baseline and candidate
    answers and the metric's values, and on a judge metric the judge's replies about them (three
    queries whatever the number of positions, four on a judge metric)."""
    samples = {
        sample.position: sample
        for sample in GoldenSample.objects.filter(dataset_id=candidate.dataset_id, position__in=positions)
    }
    hashes = {}
    for position, sample in samples.items():
        if sample.prompt or sample.messages:
            hashes[position] = prompt_sha256(messages_of({"prompt": sample.prompt, "messages": sample.messages}))
    candidate_answers, baseline_answers = _answers_of(candidate, hashes), _answers_of(baseline, hashes)
    conversations = conversation_turns(candidate, baseline, samples)
    judge, baseline_judge = judge_facts_of(candidate), judge_facts_of(baseline)
    same_judge = judge is not None and baseline_judge is not None and baseline_judge[0] == judge[0]
    candidate_judged, baseline_judged = _judge_replies(
        [
            (judge, _said(candidate_answers, conversations, "candidate")),
            (baseline_judge if same_judge else None, _said(baseline_answers, conversations, "baseline")),
        ],
        samples,
    )
    values = _per_position(candidate)
    base_values = _per_position(baseline) if baseline else {}
    spec = METRICS.get(candidate.metric)
    rows = []
    for position in positions:
        sample = samples.get(position)
        if sample is None:
            continue
        mine, theirs = values.get(position), base_values.get(position)
        change = None
        if mine is not None and theirs is not None and spec is not None and (spec.absolute or theirs != 0.0):
            change = float(spec.change(mine, theirs))
        rows.append(
            AnswerComparison(
                position=position,
                sample_id=sample.sample_id,
                category=sample.category,
                prompt=sample.prompt,
                messages=sample.messages or None,
                reference=sample.reference,
                candidate=candidate_answers.get(position),
                baseline=baseline_answers.get(position),
                candidate_value=mine,
                baseline_value=theirs,
                change=change,
                metric=candidate.metric,
                candidate_judged=_replies_at(candidate_judged, position),
                baseline_judged=_replies_at(baseline_judged, position),
                departs_at_token=departure(
                    candidate_answers.get(position),
                    baseline_answers.get(position),
                    snapshot_weights(baseline) if baseline else "",
                ),
                turns=conversations.get(position, ()),
            )
        )
    return rows


def _replies_at(replies: dict[int, tuple[JudgeReply, ...]] | None, position: int) -> tuple[JudgeReply, ...] | None:
    return None if replies is None else replies.get(position, ())


def answers_regressed_most(
    candidate: MetricSnapshot, baseline: MetricSnapshot, limit: int, order: str = "regressed"
) -> list[AnswerComparison]:
    """The `limit` prompts whose answers got worse on the snapshot's metric, side by side, in `order`."""
    worst = samples_regressed_most(samples_paired(candidate, baseline), candidate.dataset_id, limit, order)
    return answers_compared(candidate, baseline, [row.position for row in worst])


def verdict_answers_regressed_most(
    verdict: DriftVerdict, limit: int, order: str = "regressed"
) -> list[AnswerComparison] | None:
    """The answers behind a verdict on a generation metric that got most worse, side by side; None when
    the verdict's metric does not come from generated answers or has no baseline snapshot to pair with."""
    if verdict.baseline_id is None or _one_sample(verdict.metric):
        return None
    snapshots = {
        snapshot.artifact_id: snapshot
        for snapshot in MetricSnapshot.objects.select_related("artifact").filter(
            artifact_id__in=[verdict.artifact_id, verdict.baseline_id],
            dataset_id=verdict.dataset_id,
            metric=verdict.metric,
        )
    }
    candidate, baseline = snapshots.get(verdict.artifact_id), snapshots.get(verdict.baseline_id)
    if not generation_metric(candidate) or baseline is None or verdict.metric not in METRICS:
        return None
    return answers_regressed_most(candidate, baseline, limit, order)


ANSWER_ORDERS = ("regressed", "absolute", "position")
PREFERRED_ANSWER_METRIC = "answer_similarity"


class AnswerChoiceError(ValueError):
    """A dataset or metric the artifact has no generated answers for; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AnswerSource:
    """The snapshot whose answers are listed, and the one of its verdict's baseline (None without one)."""

    candidate: MetricSnapshot
    baseline: MetricSnapshot | None


def artifact_generation_snapshots(artifact: Artifact) -> list[MetricSnapshot]:
    """The artifact's snapshots of metrics computed from generated answers (arrays left out), by
    dataset name, newest dataset version first, then metric."""
    snapshots = (
        MetricSnapshot.objects.filter(artifact=artifact)
        .select_related("dataset")
        .defer("positions", "numerators", "denominators")
        .order_by("dataset__name", "-dataset__version", "metric")
    )
    return [snapshot for snapshot in snapshots if generation_metric(snapshot)]


def artifact_answer_source(artifact: Artifact, *, dataset: str = "", metric: str = "") -> AnswerSource | None:
    """Which answers of the artifact to list: on `dataset` (a name; default the first with answers, at
    its newest version scored) and `metric` (default answer_similarity, else the dataset's first
    generation metric), against its verdict's baseline. None when the artifact has no generated answers;
    AnswerChoiceError for a dataset or metric it has none on."""
    snapshots = artifact_generation_snapshots(artifact)
    if not snapshots:
        return None
    names = list(dict.fromkeys(snapshot.dataset.name for snapshot in snapshots))
    name = dataset or names[0]
    if name not in names:
        raise AnswerChoiceError(
            "dataset", f"No generated answers on {name!r}; datasets with answers: {', '.join(names)}."
        )
    newest = next(snapshot.dataset_id for snapshot in snapshots if snapshot.dataset.name == name)
    by_metric = {snapshot.metric: snapshot for snapshot in snapshots if snapshot.dataset_id == newest}
    chosen = metric or (PREFERRED_ANSWER_METRIC if PREFERRED_ANSWER_METRIC in by_metric else next(iter(by_metric)))
    if chosen not in by_metric:
        raise AnswerChoiceError(
            "metric", f"No generation metric {chosen!r} on {name}; metrics with answers: {', '.join(by_metric)}."
        )
    return _answer_source(by_metric[chosen])


def _answer_source(snapshot: MetricSnapshot) -> AnswerSource:
    """The snapshot with its arrays, and its verdict's baseline's snapshot of the same metric (two queries)."""
    baseline_id = (
        DriftVerdict.objects.filter(
            artifact_id=snapshot.artifact_id, dataset_id=snapshot.dataset_id, metric=snapshot.metric
        )
        .values_list("baseline_id", flat=True)
        .first()
    )
    loaded = {
        row.artifact_id: row
        for row in MetricSnapshot.objects.select_related("artifact", "dataset").filter(
            artifact_id__in=[snapshot.artifact_id, *([baseline_id] if baseline_id else [])],
            dataset_id=snapshot.dataset_id,
            metric=snapshot.metric,
        )
    }
    return AnswerSource(loaded[snapshot.artifact_id], loaded.get(baseline_id) if baseline_id else None)


def _per_position(snapshot: MetricSnapshot) -> dict[int, float]:
    if snapshot.metric not in METRICS:
        return {}
    positions, values = snapshot_per_sample_values(snapshot)
    return {int(p): float(v) for p, v in zip(positions, values, strict=True)}
