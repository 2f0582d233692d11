"""Judge modes over generated answers: pointwise ratings and pairwise preferences, repeated and cached.

- pointwise: each answer is rated 1–10 (MT-Bench `Rating: [[N]]`) against a rubric (the family's,
  or the sample's own `rubric`); a local judge's rating is its probability-weighted mean;
- pairwise: the candidate's and the baseline's answers are judged in both orders (candidate as A,
  then as B). An order's verdict becomes +1 (candidate better), −1 (baseline better) or 0 (tie);
  the two orders combine to their common value, and to 0 when they disagree, so a judge that
  always picks the first position prefers nothing;
- repeats: each judgement is asked `repeats` times (each its own cache entry); a sample's value is
  the mean over its valid repeats, and the share of samples whose repeats disagree is reported;
- conversations (a sample with `turns`): the judge reads the whole conversation, the model's own
  answer to every turn, and grades the answer to the last turn (MT-Bench's multi-turn templates);
  pairwise, it reads the candidate's and the baseline's whole conversations, in both orders. The
  cache key is the rendered request, so it covers every turn and every earlier answer.

An unparseable reply is asked again once; a second unparseable reply, or a call that failed past
its retries, is that judgement's error. A sample with no valid repeat is a judge error: excluded
from the metric (its value is NaN), counted and explained. Parsed replies and unparseable ones are
cached by `JudgementKey`; failed calls are not, so the next run asks again.

A caller that must show it is alive while the judge answers (a worker renewing its run's lease)
wraps the judging in `judge_heartbeat(callback)`: the callback is called every `HEARTBEAT_SECONDS`
while calls are awaited, and an exception it raises abandons the judging.
"""

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np

from evals.scoring.conversations import TURNS, user_turns
from evals.scoring.errors import ScoringError
from evals.scoring.generation import messages_of
from evals.scoring.judges.protocol import CallFailure, Completion, Judge, JudgeRequest
from evals.scoring.judges.templates import (
    TEMPLATE_VERSION,
    Turn,
    pairwise_request,
    pairwise_turns_request,
    parse_pair_verdict,
    parse_rating,
    pointwise_request,
    pointwise_turns_request,
    question_text,
)

Mode = Literal["pointwise", "pairwise"]
MODES: tuple[Mode, ...] = ("pointwise", "pairwise")
# Order 0 shows the candidate as assistant A, order 1 as assistant B.
CANDIDATE_FIRST, BASELINE_FIRST = 0, 1
# Upper bounds of a family's judging: each repeat is a judge call per sample, the rubric is in every prompt.
MAX_REPEATS = 20
MAX_RUBRIC_CHARS = 10_000
_PREFERENCE = {CANDIDATE_FIRST: {"A": 1.0, "B": -1.0, "C": 0.0}, BASELINE_FIRST: {"A": -1.0, "B": 1.0, "C": 0.0}}


@dataclass(frozen=True)
class JudgeSettings:
    mode: Mode = "pointwise"
    repeats: int = 1
    rubric: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ScoringError(f"judge mode must be one of {MODES}, not {self.mode!r}")
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise ScoringError(f"judge repeats must be from 1 to {MAX_REPEATS}, not {self.repeats}")
        if self.rubric is not None and len(self.rubric) > MAX_RUBRIC_CHARS:
            raise ScoringError(
                f"the judge rubric must be at most {MAX_RUBRIC_CHARS:,} characters, not {len(self.rubric):,}"
            )

    def facts(self, judge: Judge) -> dict[str, object]:
        """What judgements under these settings depend on (for a scorer's config key, the fingerprint)."""
        return {
            "judge": judge.identity,
            "template": TEMPLATE_VERSION,
            "mode": self.mode,
            "repeats": self.repeats,
            "rubric": self.rubric,
        }


@dataclass(frozen=True)
class JudgedItem:
    """One sample to judge: the question, the candidate's answer, the baseline's (pairwise only).

    A conversation also has `turns`: every user turn with the candidate's answer to it (`answer`) and
    the baseline's (`answer_b`, pairwise), its last turn's answers being `answer` and `baseline_answer`,
    and its `system` message, if any."""

    question: str | list[dict[str, str]]
    answer: str
    baseline_answer: str | None = None
    reference: str | None = None
    rubric: str | None = None
    turns: tuple[Turn, ...] = ()
    system: str | None = None


class JudgementKey(NamedTuple):
    judge: str
    template_version: int
    request_sha256: str
    order: int
    repeat: int


@dataclass(frozen=True)
class Judgement:
    """A judge's reply and what it meant: a rating 1–10, or a candidate preference +1/0/−1."""

    reply: str
    value: float | None
    error: str | None = None


class JudgementStore(Protocol):
    def get_many(self, keys: Sequence[JudgementKey]) -> dict[JudgementKey, Judgement]: ...

    def put_many(self, judgements: Mapping[JudgementKey, Judgement]) -> None: ...


class InMemoryJudgementStore:
    """Judgements in a dict; with a `capacity`, the least recently used are dropped beyond it."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.judgements: OrderedDict[JudgementKey, Judgement] = OrderedDict()

    def get_many(self, keys: Sequence[JudgementKey]) -> dict[JudgementKey, Judgement]:
        found = {key: self.judgements[key] for key in keys if key in self.judgements}
        for key in found:
            self.judgements.move_to_end(key)
        return found

    def put_many(self, judgements: Mapping[JudgementKey, Judgement]) -> None:
        self.judgements.update(judgements)
        while self.capacity is not None and len(self.judgements) > self.capacity:
            self.judgements.popitem(last=False)


@dataclass(frozen=True)
class JudgedSamples:
    """Per-sample values (NaN for a judge error), errors and replies, with what the judging cost.

    `replies[i]` holds every reply of sample i, in (repeat, order) order, for the review page.
    """

    mode: Mode
    values: np.ndarray
    errors: list[str | None]
    replies: list[list[str]]
    calls: int
    reused: int
    repeat_disagreement: float | None
    order_disagreement: float | None

    @property
    def error_count(self) -> int:
        return sum(error is not None for error in self.errors)

    @property
    def call_failures(self) -> list[str]:
        """Errors of calls that failed past their retries (not cached: asking again may succeed)."""
        return [error for error in self.errors if error is not None and error.startswith(_CALL_FAILED)]

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.values)

    def columns(self, name: str) -> list[dict[str, float]]:
        """Per-sample scorer values: `name` (0 for a judge error) and `judged` (1 or 0), so that
        Σ name / Σ judged is the mean over the judged samples."""
        return [
            {name: float(value) if ok else 0.0, "judged": float(ok)}
            for value, ok in zip(self.values, self.valid, strict=True)
        ]


Answer = str | Sequence[str]


def items_from_samples(
    samples: Sequence[Mapping[str, object]],
    answers: Sequence[Answer],
    baseline_answers: Sequence[Answer] | None = None,
) -> list[JudgedItem]:
    """Golden samples and their answers as judged items (the sample's `rubric` overrides the family's).
    A conversation's answer is the list of the model's answers to its user turns, in order."""
    baseline = baseline_answers if baseline_answers is not None else [None] * len(answers)
    return [
        _conversation_item(sample, answer, base)
        if sample.get(TURNS)
        else JudgedItem(
            question=messages_of(sample),
            answer=answer,
            baseline_answer=base,
            reference=str(sample["reference"]) if sample.get("reference") else None,
            rubric=_rubric(sample),
        )
        for sample, answer, base in zip(samples, answers, baseline, strict=True)
    ]


def _rubric(sample: Mapping[str, object]) -> str | None:
    return str(sample["rubric"]) if sample.get("rubric") else None


def _conversation_item(sample: Mapping[str, object], answers: Answer, baseline_answers: Answer | None) -> JudgedItem:
    users = user_turns(sample[TURNS])
    for side in (answers, baseline_answers):
        if side is not None and (isinstance(side, str) or len(side) != len(users)):
            given = "one answer" if isinstance(side, str) else f"{len(side)} answers"
            raise ScoringError(
                f"conversation {sample.get('id')!r} has {len(users)} user turns: {given} cannot be judged"
            )
    baseline = list(baseline_answers) if baseline_answers is not None else [""] * len(users)
    turns = tuple(
        Turn(
            question=turn["content"],
            answer=answer,
            answer_b=base,
            reference=str(turn["reference"]) if turn.get("reference") else None,
        )
        for turn, answer, base in zip(users, answers, baseline, strict=True)
    )
    system = next((turn["content"] for turn in sample[TURNS] if turn["role"] == "system"), None)
    return JudgedItem(
        question=turns[-1].question,
        answer=turns[-1].answer,
        baseline_answer=baseline_answers[-1] if baseline_answers is not None else None,
        reference=turns[-1].reference,
        rubric=_rubric(sample),
        turns=turns,
        system=system,
    )


def judge_items(
    judge: Judge, items: Sequence[JudgedItem], store: JudgementStore, settings: JudgeSettings
) -> JudgedSamples:
    """Judge every item `settings.repeats` times (in both orders when pairwise), reusing `store`."""
    planned = [
        (index, order, repeat, _request(item, order, settings))
        for index, item in enumerate(items)
        for repeat in range(settings.repeats)
        for order in _orders(settings.mode)
    ]
    keys = [_key(judge.identity, request, order, repeat) for _, order, repeat, request in planned]
    known = store.get_many(list(dict.fromkeys(keys)))
    missing = {key: request for key, (_, _, _, request) in zip(keys, planned, strict=True) if key not in known}
    fresh, calls = _ask(judge, missing, settings.mode)
    store.put_many({key: judgement for key, judgement in fresh.items() if not _call_failed(judgement)})
    judgements = [known.get(key) or fresh[key] for key in keys]
    return _combine(settings, items, planned, judgements, calls, len(keys) - len(missing))


def _request(item: JudgedItem, order: int, settings: JudgeSettings) -> JudgeRequest:
    if item.turns:
        return _conversation_request(item, order, settings)
    question = question_text(item.question)
    rubric = item.rubric or settings.rubric
    if settings.mode == "pointwise":
        return pointwise_request(question=question, answer=item.answer, rubric=rubric, reference=item.reference)
    if item.baseline_answer is None:
        raise ScoringError("pairwise judging needs the baseline's answer for every sample")
    first, second = (item.answer, item.baseline_answer)[:: 1 if order == CANDIDATE_FIRST else -1]
    return pairwise_request(question=question, answer_a=first, answer_b=second, rubric=rubric, reference=item.reference)


def _conversation_request(item: JudgedItem, order: int, settings: JudgeSettings) -> JudgeRequest:
    """MT-Bench's multi-turn prompts: the candidate's conversation rated, or both compared, the
    candidate's as assistant A in order 0 and as assistant B in order 1."""
    rubric = item.rubric or settings.rubric
    if settings.mode == "pointwise":
        return pointwise_turns_request(turns=item.turns, rubric=rubric, system=item.system)
    if item.baseline_answer is None:
        raise ScoringError("pairwise judging needs the baseline's answer for every sample")
    turns = item.turns
    if order == BASELINE_FIRST:
        turns = tuple(Turn(t.question, answer=t.answer_b, answer_b=t.answer, reference=t.reference) for t in turns)
    return pairwise_turns_request(turns=turns, rubric=rubric, system=item.system)


def judgement_keys(judge_identity: str, item: JudgedItem, settings: JudgeSettings) -> list[JudgementKey]:
    """The cache keys `judge_items` asks and stores for one item, in (repeat, order) order: how a
    stored reply is found again from the sample, its answer and the judge facts of a fingerprint."""
    return [
        _key(judge_identity, _request(item, order, settings), order, repeat)
        for repeat in range(settings.repeats)
        for order in _orders(settings.mode)
    ]


def _orders(mode: Mode) -> tuple[int, ...]:
    return (CANDIDATE_FIRST, BASELINE_FIRST) if mode == "pairwise" else (CANDIDATE_FIRST,)


def _key(judge_identity: str, request: JudgeRequest, order: int, repeat: int) -> JudgementKey:
    canonical = json.dumps(request.messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return JudgementKey(judge_identity, TEMPLATE_VERSION, digest, order, repeat)


def _ask(
    judge: Judge, missing: Mapping[JudgementKey, JudgeRequest], mode: Mode
) -> tuple[dict[JudgementKey, Judgement], int]:
    """Judgements of the missing keys; an unparseable reply is asked once more."""
    keys = list(missing)
    first = _interpret_all(judge, [missing[key] for key in keys], mode, keys)
    again = [key for key in keys if first[key].error is not None and not _call_failed(first[key])]
    second = _interpret_all(judge, [missing[key] for key in again], mode, again)
    return first | second, len(keys) + len(again)


def _interpret_all(
    judge: Judge, requests: list[JudgeRequest], mode: Mode, keys: list[JudgementKey]
) -> dict[JudgementKey, Judgement]:
    results = _complete_many(judge, requests) if requests else []
    return {key: _interpret(result, mode, key.order) for key, result in zip(keys, results, strict=True)}


# How often the caller's heartbeat is called while judge calls are awaited.
HEARTBEAT_SECONDS = 0.5
_heartbeat: ContextVar[Callable[[], None] | None] = ContextVar("judge_heartbeat", default=None)


@contextmanager
def judge_heartbeat(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` every `HEARTBEAT_SECONDS` while judging inside the block waits on the judge.

    A context, not an argument, so that every judge scorer (a plug-in's too) keeps its caller alive
    without knowing of it. An exception from `callback` abandons the judging: the calls in flight
    finish on their own thread and their replies are neither used nor cached.
    """
    token = _heartbeat.set(callback)
    try:
        yield
    finally:
        _heartbeat.reset(token)


def _complete_many(judge: Judge, requests: list[JudgeRequest]) -> list[Completion | CallFailure]:
    heartbeat = _heartbeat.get()
    if heartbeat is None:
        return judge.complete_many(requests)
    # The judge is awaited on a thread of its own, so that this one stays free to beat.
    waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-wait")
    try:
        calls = waiter.submit(judge.complete_many, requests)
        while not wait([calls], timeout=HEARTBEAT_SECONDS).done:
            heartbeat()
        return calls.result()
    finally:
        waiter.shutdown(wait=False)


_CALL_FAILED = "judge call failed: "


def _call_failed(judgement: Judgement) -> bool:
    return judgement.error is not None and judgement.error.startswith(_CALL_FAILED)


def _interpret(result: Completion | CallFailure, mode: Mode, order: int) -> Judgement:
    if isinstance(result, CallFailure):
        return Judgement(reply="", value=None, error=_CALL_FAILED + result.message)
    if mode == "pointwise":
        if result.probabilities is not None:
            mean = sum(int(verdict) * p for verdict, p in result.probabilities.items())
            return Judgement(reply=result.text, value=float(mean))
        rating = parse_rating(result.text)
        if rating is None:
            return Judgement(reply=result.text, value=None, error="unparseable reply: no single `Rating: [[1–10]]`")
        return Judgement(reply=result.text, value=float(rating))
    verdict = parse_pair_verdict(result.text)
    if verdict is None:
        return Judgement(reply=result.text, value=None, error="unparseable reply: no single [[A]], [[B]] or [[C]]")
    return Judgement(reply=result.text, value=_PREFERENCE[order][verdict])


def _combine(
    settings: JudgeSettings,
    items: Sequence[JudgedItem],
    planned: list[tuple[int, int, int, JudgeRequest]],
    judgements: list[Judgement],
    calls: int,
    reused: int,
) -> JudgedSamples:
    per_sample: list[dict[int, list[Judgement]]] = [{} for _ in items]
    for (index, _, repeat, _), judgement in zip(planned, judgements, strict=True):
        per_sample[index].setdefault(repeat, []).append(judgement)
    values, errors, repeat_disagrees, order_disagrees = [], [], [], []
    for repeats in per_sample:
        repeat_values = []
        for judged in repeats.values():
            if any(j.value is None for j in judged):
                continue
            order_disagrees.append(len({j.value for j in judged}) > 1)
            repeat_values.append(judged[0].value if len(set(j.value for j in judged)) == 1 else 0.0)
        if repeat_values:
            values.append(float(np.mean(repeat_values)))
            errors.append(None)
            if len(repeat_values) > 1:
                repeat_disagrees.append(len(set(repeat_values)) > 1)
        else:
            values.append(float("nan"))
            errors.append(next(j.error for judged in repeats.values() for j in judged if j.error))
    replies = [[j.reply for judged in repeats.values() for j in judged] for repeats in per_sample]
    return JudgedSamples(
        mode=settings.mode,
        values=np.array(values, dtype=np.float64),
        errors=errors,
        replies=replies,
        calls=calls,
        reused=reused,
        repeat_disagreement=_share(repeat_disagrees),
        order_disagreement=_share(order_disagrees) if settings.mode == "pairwise" else None,
    )


def _share(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None
