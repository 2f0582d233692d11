"""Stored generated answers of a snapshot's weights, how they differ from a baseline's, and what drafting did."""

import datetime
from dataclasses import dataclass

import numpy as np
from django.db.models import FloatField, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from evals.models import DriftVerdict, EvalRun, Generation, GoldenSample, MetricSnapshot
from evals.scoring.conversations import turn_messages, user_turns
from evals.scoring.generation import DraftStats, messages_of
from evals.scoring.hashing import prompt_sha256


@dataclass(frozen=True)
class Answer:
    """One generated answer as stored (model output: untrusted text); a drafted one also says whose
    answer drafted it and the token where it departs from that answer (None when they are equal)."""

    text: str
    tokens: int
    finish: str
    drafted_from: str = ""
    departs_at_token: int | None = None


def generation_metric(snapshot: MetricSnapshot | None) -> bool:
    """Whether a snapshot's metric was computed from generated answers (its fingerprint says how)."""
    return bool(snapshot and generation_settings_of(snapshot))


def generation_settings_of(snapshot: MetricSnapshot) -> tuple[str, str, int] | None:
    """(generation config sha256, chat-template sha256, engine version) the snapshot's answers came from."""
    settings = (snapshot.fingerprint or {}).get("settings") or {}
    if not isinstance(settings, dict) or not settings.get("generation"):
        return None
    return str(settings["generation"]), str(settings.get("chat_template", "")), int(settings.get("engine", 0))


def _answers_of(snapshot: MetricSnapshot | None, prompt_hashes: dict[int, str]) -> dict[int, Answer]:
    """The snapshot's weights' stored answers to the given prompts, by dataset position (one query)."""
    generations = generations_of(snapshot)
    if generations is None or not prompt_hashes:
        return {}
    rows = generations.filter(prompt_sha256__in=set(prompt_hashes.values())).values_list(
        "prompt_sha256", "text", "tokens", "finish", "drafted_from", "departs_at_token"
    )
    by_hash = {digest: Answer(*fields) for digest, *fields in rows}
    return {position: by_hash[digest] for position, digest in prompt_hashes.items() if digest in by_hash}


def generations_of(snapshot: MetricSnapshot | None) -> QuerySet[Generation] | None:
    """Every stored answer of the snapshot's weights under its generation settings; None when its metric
    was not computed from generated answers."""
    settings = generation_settings_of(snapshot) if snapshot else None
    if settings is None:
        return None
    config, template, engine = settings
    return Generation.objects.filter(
        weights_sha256=snapshot_weights(snapshot),
        config_sha256=config,
        chat_template_sha256=template,
        engine_version=engine,
    )


def snapshot_weights(snapshot: MetricSnapshot) -> str:
    """The sha256 of the weights a snapshot scored."""
    return snapshot.fingerprint.get("weights_sha256") or snapshot.artifact.sha256


def departure(candidate: Answer | None, baseline: Answer | None, baseline_weights: str) -> int | None:
    """Where the candidate's answer departs from the baseline's: known when it was drafted from it."""
    if candidate is None or baseline is None or candidate.text == baseline.text:
        return None
    return candidate.departs_at_token if candidate.drafted_from == baseline_weights else None


@dataclass(frozen=True)
class AnswerDiff:
    """How many of a candidate's answers equal its baseline's, and where the others depart (median
    token, over the answers drafted from the baseline's; None when none was)."""

    compared: int
    unchanged: int
    median_departure: float | None

    @property
    def sentence(self) -> str:
        said = f"{self.unchanged} of {self.compared} answers unchanged"
        if self.unchanged == self.compared or self.median_departure is None:
            return said
        return f"{said}; the others depart at token {self.median_departure:g} on median"


def answer_diff(candidate: MetricSnapshot, baseline: MetricSnapshot | None) -> AnswerDiff | None:
    """The candidate's answers beside the baseline's, over every prompt both answered (three queries);
    None without a baseline or stored answers on both sides. Information, not a gate."""
    if baseline is None or not generation_metric(candidate):
        return None
    hashes = {}
    for position, prompt, messages in GoldenSample.objects.filter(dataset_id=candidate.dataset_id).values_list(
        "position", "prompt", "messages"
    ):
        if prompt or messages:
            hashes[position] = prompt_sha256(messages_of({"prompt": prompt, "messages": messages}))
    mine, theirs = _answers_of(candidate, hashes), _answers_of(baseline, hashes)
    both = [position for position in mine if position in theirs]
    if not both:
        return None
    unchanged = sum(mine[p].text == theirs[p].text for p in both)
    weights = snapshot_weights(baseline)
    departures = [d for p in both if (d := departure(mine[p], theirs[p], weights)) is not None]
    return AnswerDiff(len(both), unchanged, float(np.median(departures)) if departures else None)


@dataclass(frozen=True)
class TurnComparison:
    """One user turn of a conversation, its reference, and each side's answer to it after that side's
    own earlier answers (None where none is stored)."""

    number: int
    user: str
    reference: str
    candidate: Answer | None
    baseline: Answer | None


def conversation_turns(
    candidate: MetricSnapshot, baseline: MetricSnapshot | None, samples: dict[int, GoldenSample]
) -> dict[int, tuple[TurnComparison, ...]]:
    """Every turn of the conversations among `samples` (by position) side by side: one query per turn
    depth and side, each side's later turns found under its own earlier answers."""
    talks = {position: sample.turns for position, sample in samples.items() if sample.turns}
    mine = _conversation_answers(candidate, talks)
    theirs = _conversation_answers(baseline, talks) if baseline else {}
    shown = {}
    for position, turns in talks.items():
        shown[position] = tuple(
            TurnComparison(
                number=number,
                user=turn["content"],
                reference=turn.get("reference", ""),
                candidate=_nth(mine.get(position), number - 1),
                baseline=_nth(theirs.get(position), number - 1),
            )
            for number, turn in enumerate(user_turns(turns), start=1)
        )
    return shown


def _conversation_answers(snapshot: MetricSnapshot, talks: dict[int, list]) -> dict[int, list[Answer]]:
    """The snapshot's weights' stored answers to each conversation's turns, up to the first missing one."""
    answers: dict[int, list[Answer]] = {position: [] for position in talks}
    for depth in range(max((len(user_turns(turns)) for turns in talks.values()), default=0)):
        hashes = {
            position: prompt_sha256(turn_messages(turns, [a.text for a in answers[position]])[depth])
            for position, turns in talks.items()
            if len(answers[position]) == depth and depth < len(user_turns(turns))
        }
        if not hashes:
            break
        for position, answer in _answers_of(snapshot, hashes).items():
            answers[position].append(answer)
    return answers


def _nth(answers: list[Answer] | None, index: int) -> Answer | None:
    return answers[index] if answers is not None and index < len(answers) else None


def verdict_answer_diff(verdict: DriftVerdict) -> AnswerDiff | None:
    """How many of the candidate's answers behind a verdict on a generation metric equal the baseline's."""
    if verdict.baseline_id is None:
        return None
    snapshots = {
        snapshot.artifact_id: snapshot
        for snapshot in MetricSnapshot.objects.select_related("artifact")
        .defer("positions", "numerators", "denominators")
        .filter(
            artifact_id__in=[verdict.artifact_id, verdict.baseline_id],
            dataset_id=verdict.dataset_id,
            metric=verdict.metric,
        )
    }
    candidate = snapshots.get(verdict.artifact_id)
    return answer_diff(candidate, snapshots.get(verdict.baseline_id)) if candidate else None


def drafting_totals(since: datetime.datetime | None = None) -> DraftStats:
    """What drafting greedy answers did over the runs finished since `since` (else ever), summed in the
    database (one query)."""
    runs = EvalRun.objects.filter(drafting__has_key="answers")
    if since is not None:
        runs = runs.filter(finished_at__gte=since)
    names = list(DraftStats().as_dict())
    totals = runs.order_by().aggregate(**{name: Sum(Cast(KT(f"drafting__{name}"), FloatField())) for name in names})
    return DraftStats(**{name: round(totals[name] or 0) for name in names})
