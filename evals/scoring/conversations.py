"""Multi-turn conversations: the model answers a sample's `turns` one after the other, its own
earlier answers fed back as the assistant's turns, through the chat template.

Turn k is asked as the chat messages of the conversation so far (the system message, each earlier
user turn followed by the model's answer to it, then user turn k), so it is an ordinary generation
of `generate_cached`: cached per turn under the hash of those messages. The key therefore covers the
model's own earlier answers: a changed first answer asks (and generates) a new second turn, an
unchanged one finds it stored. Drafting works per turn the same way.

Answer scorers score each turn as a sample of its own (the turn's messages and its reference) and
a conversation's value is the `mean` of its turns' values (the default), the `last` turn's, or the
weakest turn's (`min`: the lowest value of a metric where higher is better, the highest where lower is).
A judge reads the whole conversation instead (`answer_samples` gives it every turn's answer) and
grades the answer to its last turn; `stored_conversations` finds a conversation's answers again
without generating, turn after turn (a judge run, the review page).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evals.scoring.batching import ProgressCallback
from evals.scoring.errors import ScoringError
from evals.scoring.generation import (
    Drafting,
    Generation,
    GenerationSettings,
    GenerationStore,
    Messages,
    generate_cached,
    generation_keys,
    messages_of,
)
from evals.scoring.loading import LoadedModel, ModelFacts
from evals.scoring.metrics import MetricSpec

TURNS = "turns"
TURN_AGGREGATES = ("mean", "last", "min")


@dataclass(frozen=True)
class ConversationAnswers:
    """Each conversation's answers, one per user turn, and the forward passes generating them took."""

    answers: list[list[Generation]]
    forward_passes: int

    @property
    def tokens_generated(self) -> int:
        return sum(answer.tokens for answers in self.answers for answer in answers)


def user_turns(turns: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    return [turn for turn in turns if turn["role"] == "user"]


def turn_messages(turns: Sequence[Mapping[str, str]], answers: Sequence[str]) -> list[Messages]:
    """The messages asking each user turn, given the answers to the earlier ones (one list per turn
    answered so far, plus the next one when `answers` does not cover every turn yet)."""
    history = [{"role": "system", "content": turn["content"]} for turn in turns if turn["role"] == "system"]
    asked = []
    for index, turn in enumerate(user_turns(turns)):
        history = [*history, {"role": "user", "content": turn["content"]}]
        asked.append(history)
        if index >= len(answers):
            break
        history = [*history, {"role": "assistant", "content": answers[index]}]
    return asked


def answer_conversations(
    lm: LoadedModel,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    store: GenerationStore,
    settings: GenerationSettings,
    *,
    token_budget: int | None = None,
    progress: ProgressCallback | None = None,
    drafting: Drafting | None = None,
) -> ConversationAnswers:
    """The model's answers to every user turn of each conversation, turn 1 of all of them in one
    batch, then turn 2 of those that have one, and so on."""
    answers: list[list[Generation]] = [[] for _ in conversations]
    users = [len(user_turns(turns)) for turns in conversations]
    passes = 0
    for turn in range(max(users, default=0)):
        active = [index for index, count in enumerate(users) if count > turn]
        prompts = [
            turn_messages(conversations[index], [answer.text for answer in answers[index]])[-1] for index in active
        ]
        generated = generate_cached(lm, prompts, store, settings, token_budget=token_budget, drafting=drafting)
        passes += generated.forward_passes
        for index, answer in zip(active, generated.answers, strict=True):
            answers[index].append(answer)
        if progress is not None:
            progress(sum(count <= turn + 1 for count in users))
    return ConversationAnswers(answers, passes)


def stored_conversations(
    lm: LoadedModel | ModelFacts,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    store: GenerationStore,
    settings: GenerationSettings,
) -> list[list[Generation] | None]:
    """Each conversation's stored answers, one per user turn, found turn after turn under the model's
    own earlier answers; None for a conversation with a turn whose answer was never stored. Nothing
    is generated: one store lookup per turn depth."""
    answers: list[list[Generation]] = [[] for _ in conversations]
    users = [len(user_turns(turns)) for turns in conversations]
    missing: set[int] = set()
    for turn in range(max(users, default=0)):
        active = [index for index, count in enumerate(users) if count > turn and index not in missing]
        if not active:
            break
        prompts = [
            turn_messages(conversations[index], [answer.text for answer in answers[index]])[-1] for index in active
        ]
        keys = generation_keys(lm, prompts, settings)
        found = store.get_many(keys)
        for index, key in zip(active, keys, strict=True):
            if key in found:
                answers[index].append(found[key])
            else:
                missing.add(index)
    return [None if index in missing else answer for index, answer in enumerate(answers)]


@dataclass(frozen=True)
class SampleAnswers:
    """Each sample's answer: a prompt's text, a conversation's texts (one per user turn, the model's
    own earlier answers fed back); and what generating them took."""

    texts: list[str | list[str]]
    forward_passes: int
    tokens: int


def answer_samples(
    lm: LoadedModel | ModelFacts,
    samples: Sequence[Mapping[str, object]],
    store: GenerationStore,
    settings: GenerationSettings,
    *,
    token_budget: int | None = None,
    progress: ProgressCallback | None = None,
    drafting: Drafting | None = None,
) -> SampleAnswers:
    """The answers to samples with a prompt, messages or turns: the prompts in one `generate_cached`,
    then the conversations turn by turn (`answer_conversations`). Answers already in `store` are
    taken from it (all of them, for a model known only by its facts)."""
    single = [index for index, sample in enumerate(samples) if not sample.get(TURNS)]
    talks = [index for index, sample in enumerate(samples) if sample.get(TURNS)]
    texts: list[str | list[str]] = [""] * len(samples)
    passes = tokens = 0
    if single:
        generated = generate_cached(
            lm,
            [messages_of(samples[index]) for index in single],
            store,
            settings,
            token_budget=token_budget,
            progress=progress,
            drafting=drafting,
        )
        for index, answer in zip(single, generated.texts, strict=True):
            texts[index] = answer
        passes, tokens = generated.forward_passes, int(generated.tokens.sum())
    if talks:
        talked = answer_conversations(
            lm,
            [samples[index][TURNS] for index in talks],
            store,
            settings,
            token_budget=token_budget,
            progress=None if progress is None else lambda done: progress(len(single) + done),
            drafting=drafting,
        )
        for index, answers in zip(talks, talked.answers, strict=True):
            texts[index] = [answer.text for answer in answers]
        passes, tokens = passes + talked.forward_passes, tokens + talked.tokens_generated
    return SampleAnswers(texts, passes, tokens)


def turn_samples(sample: Mapping[str, object], answers: Sequence[Generation]) -> list[dict[str, object]]:
    """One sample per user turn of a conversation: the messages asking it (the model's own earlier
    answers included) and the turn's reference, scored like any sample with messages."""
    turns = sample[TURNS]
    asked = turn_messages(turns, [answer.text for answer in answers])
    return [
        {"id": sample.get("id"), "messages": messages, "reference": turn.get("reference")}
        for messages, turn in zip(asked, user_turns(turns), strict=False)
    ]


def aggregate_turns(values: Sequence[Mapping[str, float]], how: str, metrics: Sequence[MetricSpec]) -> dict[str, float]:
    """A conversation's values from its turns' values (`TURN_AGGREGATES`)."""
    if how not in TURN_AGGREGATES:
        raise ScoringError(f"turns must be one of {', '.join(TURN_AGGREGATES)}, not {how!r}")
    if how == "last":
        return dict(values[-1])
    lower_is_better = {spec.numerator for spec in metrics if spec.direction == "lower"}
    aggregated = {}
    for name in values[0]:
        column = np.array([turn[name] for turn in values], dtype=np.float64)
        if how == "mean":
            aggregated[name] = float(column.mean())
        else:
            aggregated[name] = float(column.max() if name in lower_is_better else column.min())
    return aggregated
